/**
 * The safety properties of Raft (Figure 3 of the paper), checked incrementally after every
 * step of the simulation, and the failures a run can end with. Each check costs about one map
 * lookup per entry written, applied or committed, so running them always stays cheap.
 *
 * - Election Safety: at most one leader per term, over every term ever seen, across crashes.
 * - Log Matching: an (index, term) position names one entry, and the entry before it always has
 *   the same term; by induction two logs that share a position share the whole prefix.
 * - Leader Completeness: a node that becomes leader of term T holds every entry committed in a
 *   term before T.
 * - State Machine Safety: all nodes apply the same entry at an index, and reach the same
 *   digest there, also when they load a snapshot instead.
 * - Durable state never regresses: the persisted term and commit never go down, and a node
 *   never votes twice in one term.
 */
import type { Entry, HardState } from "../../src/domain/raft/types.js"
import type { LogModel } from "./logModel.js"
import { entryKey } from "./stateMachine.js"

export interface Where {
  readonly seed: number
  readonly tick: number
  readonly step: number
}

export type FailureKind = "safety" | "liveness" | "crash"

/** A run's failure: its message names the seed, the step and the property. */
export class SimFailure extends Error {
  override readonly name = "SimFailure"
  recent: ReadonlyArray<string> = []

  constructor(
    readonly kind: FailureKind,
    readonly invariant: string,
    readonly where: Where,
    readonly detail: string,
    options?: { cause?: unknown }
  ) {
    super(`${kind} violation: ${invariant} (seed ${where.seed}, step ${where.step}, tick ${where.tick}): ${detail}`, options)
  }
}

/** The CLI's exit codes: 0 ok, 1 safety, 2 liveness, 3 crash (an exception). */
export const exitCodeOf = (error: unknown): 1 | 2 | 3 => {
  if (!(error instanceof SimFailure)) return 3
  return error.kind === "safety" ? 1 : error.kind === "liveness" ? 2 : 3
}

interface Position {
  readonly key: string
  readonly prevTerm: number
}

export class SafetyChecker {
  /** Every (term, leader) ever seen. */
  readonly leaders = new Map<number, string>()
  private readonly positions = new Map<string, Position>()
  /** The committed log as leaders reported it, by index. */
  private readonly committedTerm: Array<number | undefined> = []
  private readonly committedKey: Array<string | undefined> = []
  /** The term of the first leader seen with a commit index covering the entry. */
  private readonly commitTerm: Array<number> = []
  maxCommitted = 0
  /** The state machine digest reached at each index, by whoever applied it first. */
  private readonly appliedDigest: Array<string | undefined> = []
  private readonly commandIndex = new Map<string, number>()
  private readonly durable = new Map<string, HardState>()
  private readonly votes = new Map<string, string>()

  constructor(private readonly where: () => Where) {}

  fail(invariant: string, detail: string): never {
    throw new SimFailure("safety", invariant, this.where(), detail)
  }

  leaderSeen(node: string, term: number): void {
    const known = this.leaders.get(term)
    if (known === undefined) this.leaders.set(term, node)
    else if (known !== node) this.fail("election-safety", `${node} and ${known} are both leaders of term ${term}`)
  }

  /** After `node` persisted `entries` (already in `model`). */
  appended(node: string, model: LogModel, entries: ReadonlyArray<Entry>): void {
    for (const e of entries) {
      const prevTerm = model.termAt(e.index - 1)
      if (prevTerm === undefined) this.fail("log-matching", `${node} stored ${e.index} with no entry before it`)
      const pos = `${e.index}:${e.term}`
      const key = entryKey(e)
      const known = this.positions.get(pos)
      if (known === undefined) this.positions.set(pos, { key, prevTerm })
      else if (known.key !== key || known.prevTerm !== prevTerm) {
        this.fail(
          "log-matching",
          `${node} stored (${pos}) as ${key} after term ${prevTerm}; elsewhere it is ${known.key} after term ${known.prevTerm}`
        )
      }
    }
  }

  /** Votes that left a node, by (voter, term): a second, different one is a double vote. */
  voteGranted(node: string, term: number, candidate: string): void {
    const key = `${node}@${term}`
    const known = this.votes.get(key)
    if (known === undefined) this.votes.set(key, candidate)
    else if (known !== candidate) this.fail("one-vote-per-term", `${node} granted its term ${term} vote to ${known} and to ${candidate}`)
  }

  hardStatePersisted(node: string, hs: HardState): void {
    const before = this.durable.get(node)
    if (before !== undefined) {
      if (hs.term < before.term) this.fail("durable-term", `${node} persisted term ${hs.term} after ${before.term}`)
      if (hs.commit < before.commit) {
        this.fail("commit-monotonic", `${node} persisted commit ${hs.commit} after ${before.commit}`)
      }
      if (hs.term === before.term && before.vote !== null && hs.vote !== before.vote) {
        this.fail("one-vote-per-term", `${node} voted for ${before.vote} then ${hs.vote} in term ${hs.term}`)
      }
    }
    this.durable.set(node, hs)
  }

  /** A node's commit index as it reports it; leaders define what is committed. */
  commitSeen(node: string, leader: boolean, term: number, commit: number, model: LogModel): void {
    if (commit <= this.maxCommitted) return
    if (!leader) this.fail("commit-by-leader", `${node} (not leader) commits ${commit}; no leader went past ${this.maxCommitted}`)
    for (let i = this.maxCommitted + 1; i <= commit; i++) {
      this.commitTerm[i] = term
      const e = model.entryAt(i)
      if (e === undefined) this.fail("commit-by-leader", `leader ${node} commits ${commit} but has no entry ${i}`)
      this.record(i, e.term, entryKey(e))
    }
    this.maxCommitted = commit
  }

  private record(index: number, term: number, key: string): void {
    const t = this.committedTerm[index]
    if (t === undefined) {
      this.committedTerm[index] = term
      this.committedKey[index] = key
    } else if (t !== term || this.committedKey[index] !== key) {
      this.fail("state-machine-safety", `entry ${index} committed as ${this.committedKey[index]}@${t}, now ${key}@${term}`)
    }
  }

  /** `node` just became leader of `term`: its log must hold every entry committed before. */
  becameLeader(node: string, term: number, model: LogModel): void {
    const base = model.snapshotIndex
    if (base > this.maxCommitted) this.fail("leader-completeness", `${node} holds a snapshot at ${base} beyond commit`)
    const baseTerm = this.committedTerm[base]
    if (base > 0 && baseTerm !== undefined && baseTerm !== model.snapshot.meta.term) {
      this.fail("leader-completeness", `${node}'s snapshot at ${base} has term ${model.snapshot.meta.term}, committed ${baseTerm}`)
    }
    for (let i = base + 1; i <= this.maxCommitted; i++) {
      if (this.commitTerm[i] >= term) continue
      const e = model.entryAt(i)
      const want = this.committedTerm[i]
      if (e === undefined || (want !== undefined && (e.term !== want || entryKey(e) !== this.committedKey[i]))) {
        this.fail(
          "leader-completeness",
          `${node} became leader of term ${term} without committed entry ${i} (${this.committedKey[i]}@${want}, committed in term ${this.commitTerm[i]}); it has ${e === undefined ? "nothing" : `${entryKey(e)}@${e.term}`}`
        )
      }
    }
  }

  /** `node` applied `e` and its state machine reached `digest`. */
  applied(node: string, e: Entry, digest: string): void {
    const i = e.index
    if (i > this.maxCommitted) this.fail("apply-committed-only", `${node} applied ${i} beyond commit ${this.maxCommitted}`)
    const key = entryKey(e)
    this.record(i, e.term, key)
    const d = this.appliedDigest[i]
    if (d === undefined) this.appliedDigest[i] = digest
    else if (d !== digest) this.fail("state-machine-safety", `${node} reached digest ${digest} at ${i}, others ${d}`)
    if (e.payload._tag === "Command") {
      const at = this.commandIndex.get(e.payload.data)
      if (at === undefined) this.commandIndex.set(e.payload.data, i)
      else if (at !== i) this.fail("no-duplicate-apply", `${node} applied ${e.payload.data} at ${i}, already at ${at}`)
    }
  }

  /** `node` loaded the image of a snapshot at (index, term). */
  snapshotLoaded(node: string, index: number, term: number, digest: string): void {
    if (index === 0) return
    if (index > this.maxCommitted) this.fail("snapshot-committed-only", `${node} loaded a snapshot at ${index} beyond commit`)
    const t = this.committedTerm[index]
    if (t !== undefined && t !== term) this.fail("state-machine-safety", `${node} loaded snapshot ${index}@${term}, committed term ${t}`)
    const d = this.appliedDigest[index]
    if (d !== undefined && d !== digest) {
      this.fail("state-machine-safety", `${node} loaded a snapshot at ${index} with digest ${digest}, applied elsewhere as ${d}`)
    }
    if (d === undefined) this.appliedDigest[index] = digest
  }

  /** The committed command at `index`, if known. */
  committedAt(index: number): string | undefined {
    return this.committedKey[index]
  }
}
