/**
 * What one simulated node has durably persisted, kept in memory: the oracle the invariants read
 * (querying SQLite after every step would be far too slow) and, with `storage: "memory"`, the
 * store itself. It follows the write rules of src/storage/RaftStorage.ts, with the same checks;
 * on every restart the cluster compares it with what the SQLite store loads.
 */
import type { Persisted } from "../../src/domain/raft/ready.js"
import type { Entry, HardState, Snapshot } from "../../src/domain/raft/types.js"
import {
  checkAppend,
  checkCommit,
  checkCompaction,
  checkSnapshotAdvances
} from "../../src/storage/logInvariants.js"
import type { PersistInput } from "../../src/storage/RaftStorage.js"

export class LogModel {
  hardState: HardState
  snapshot: Snapshot
  /** Entries after the snapshot: entries[i].index === snapshot.meta.index + 1 + i. */
  private entries: Array<Entry>

  constructor(persisted: Persisted) {
    this.hardState = persisted.hardState
    if (persisted.snapshot === undefined) throw new Error("the simulator bootstraps every node with a snapshot")
    this.snapshot = persisted.snapshot
    this.entries = [...persisted.entries]
  }

  get snapshotIndex(): number {
    return this.snapshot.meta.index
  }

  lastIndex(): number {
    return this.snapshot.meta.index + this.entries.length
  }

  lastTerm(): number {
    return this.entries.length === 0 ? this.snapshot.meta.term : this.entries[this.entries.length - 1].term
  }

  /** The term at `index`: the snapshot's at its index, undefined below it or past the end. */
  termAt(index: number): number | undefined {
    const base = this.snapshot.meta.index
    if (index === base) return this.snapshot.meta.term
    if (index < base || index > this.lastIndex()) return undefined
    return this.entries[index - base - 1].term
  }

  entryAt(index: number): Entry | undefined {
    const base = this.snapshot.meta.index
    if (index <= base || index > this.lastIndex()) return undefined
    return this.entries[index - base - 1]
  }

  load(): Persisted {
    return { hardState: this.hardState, snapshot: this.snapshot, entries: [...this.entries] }
  }

  /** One Ready's writes, in the order of ready.ts. */
  persist(r: PersistInput): void {
    if (r.snapshot !== undefined) this.storeSnapshot(r.snapshot)
    if (r.truncateFrom !== undefined) this.truncateFrom(r.truncateFrom)
    if (r.entries.length > 0) {
      checkAppend({ index: this.lastIndex(), term: this.lastTerm() }, r.entries)
      for (const e of r.entries) this.entries.push(e)
    }
    if (r.hardState !== undefined) {
      checkCommit(r.hardState.commit, { index: this.lastIndex(), term: this.lastTerm() })
      this.hardState = r.hardState
    }
    if (r.compactTo !== undefined) checkCompaction(r.compactTo, this.snapshot.meta.index)
  }

  /** The snapshot replaces the log up to its index; what follows it stays. */
  private storeSnapshot(s: Snapshot): void {
    checkSnapshotAdvances(s.meta.index, this.snapshot.meta.index)
    const dropped = Math.min(this.entries.length, Math.max(0, s.meta.index - this.snapshot.meta.index))
    this.entries = this.entries.slice(dropped)
    this.snapshot = s
  }

  private truncateFrom(from: number): void {
    const keep = Math.max(0, from - this.snapshot.meta.index - 1)
    if (keep < this.entries.length) this.entries.length = keep
  }
}
