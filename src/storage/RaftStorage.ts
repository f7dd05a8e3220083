import Database from "better-sqlite3"
import type { Persisted, Ready } from "../domain/raft/ready.js"
import type { Entry, HardState, Snapshot } from "../domain/raft/types.js"
import { decodeConfiguration, decodePayload, encodeConfiguration, encodePayload } from "./codec.js"
import { type LogPosition, logOrigin } from "./logInvariants.js"
import { migrate } from "./migrations.js"
import { PersistenceError, toPersistenceError } from "./PersistenceError.js"
import { configureConnection, isNothingToPersist, makeLogWriter, type PersistRequest } from "./raftLogWriter.js"
import {
  type HardStateRow,
  type LogRow,
  MetaKey,
  raftMigrations,
  raftSql,
  type SnapshotRow
} from "./raftSchema.js"
import { readPragmas, type StoragePragmas } from "./sqliteSettings.js"

export interface RaftStorageOptions {
  /** How long a write waits for a lock held by another connection (default 5000). */
  readonly busyTimeoutMs?: number
  /** Recorded on first open and checked on every later one, so a node never opens another's log. */
  readonly identity?: { readonly group: string; readonly node: string }
}

/** The part of a Ready that goes to disk, in the order ready.ts prescribes. */
export type PersistInput = Pick<
  Ready,
  "snapshot" | "truncateFrom" | "entries" | "hardState" | "compactTo"
>

/** The same, also for a bootstrap's entries (read-only). */
type PersistSteps = Omit<PersistInput, "entries"> & { readonly entries: ReadonlyArray<Entry> }

export type { StoragePragmas }

/**
 * The durable Raft state of one node: hard state, log and snapshot. Synchronous on purpose:
 * the simulator drives many nodes in one process, and a batch costs one transaction (one
 * fsync) however many entries it carries. Every method throws PersistenceError on an I/O or
 * data failure and StorageInvariantViolation when asked for a write that breaks the log.
 */
export interface RaftStorage {
  readonly path: string
  /** What a restarted node resumes from, or undefined if the store was never bootstrapped. */
  load(): Persisted | undefined
  /** Initialises an empty store; fails if it was bootstrapped before. */
  bootstrap(persisted: Persisted): void
  /** Writes one Ready's worth durably in one transaction; returns once it is fsynced. */
  persist(ready: PersistInput): void
  /** Index of the last stored entry, else of the snapshot, else 0. */
  lastIndex(): number
  /** Stored entries with lo <= index < hi, in order. */
  entries(lo: number, hi: number): Array<Entry>
  meta(key: string): string | undefined
  pragmas(): StoragePragmas
  /** Idempotent. */
  close(): void
}

export const openRaftStorage = (
  path: string | ":memory:",
  options: RaftStorageOptions = {}
): RaftStorage => guard("open", () => SqliteRaftStorage.open(path, options))

/** Runs `f`, reporting any failure that is not already typed as a PersistenceError. */
const guard = <A>(operation: string, f: () => A): A => {
  try {
    return f()
  } catch (error) {
    throw toPersistenceError(operation, error)
  }
}

const prepare = (db: Database) => ({
  hardStateGet: db.prepare<[], HardStateRow>(raftSql.hardStateGet),
  snapshotGet: db.prepare<[], SnapshotRow>(raftSql.snapshotGet),
  snapshotPosition: db.prepare<[], { idx: number; term: number }>(raftSql.snapshotPosition),
  logLast: db.prepare<[], { idx: number; term: number }>(raftSql.logLast),
  logRange: db.prepare<[number, number], LogRow>(raftSql.logRange),
  metaGet: db.prepare<[string], { value: string }>(raftSql.metaGet),
  metaPut: db.prepare<[string, string]>(raftSql.metaPut)
})

type Statements = ReturnType<typeof prepare>

/**
 * A Ready's writes as plain data, the payloads and configuration encoded to their stored JSON
 * (once: the writer thread receives these strings as they are).
 */
export const toPersistRequest = (r: PersistSteps): PersistRequest => ({
  snapshot:
    r.snapshot === undefined
      ? undefined
      : {
          index: r.snapshot.meta.index,
          term: r.snapshot.meta.term,
          config: encodeConfiguration(r.snapshot.meta.config),
          data: r.snapshot.data
        },
  truncateFrom: r.truncateFrom,
  indexes: r.entries.map((e) => e.index),
  terms: r.entries.map((e) => e.term),
  payloads: r.entries.map((e) => encodePayload(e.payload)),
  hardState: r.hardState,
  compactTo: r.compactTo
})

const toEntry = (row: LogRow): Entry => ({
  index: row.idx,
  term: row.term,
  payload: decodePayload(row.payload, row.idx)
})

class SqliteRaftStorage implements RaftStorage {
  static open(path: string, options: RaftStorageOptions): SqliteRaftStorage {
    const busyTimeoutMs = options.busyTimeoutMs ?? 5000
    const db = new Database(path, { timeout: busyTimeoutMs })
    try {
      configureConnection(db, busyTimeoutMs)
      migrate(db, "raft", raftMigrations)
      const storage = new SqliteRaftStorage(db, prepare(db), path)
      if (options.identity !== undefined) storage.claimIdentity(options.identity)
      return storage
    } catch (error) {
      db.close()
      throw error
    }
  }

  private bootstrapped: boolean
  private readonly writeLog: (r: PersistRequest) => void
  private readonly persistTx: Database.Transaction<(r: PersistInput) => void>
  private readonly bootstrapTx: Database.Transaction<(p: Persisted) => void>
  private readonly loadTx: Database.Transaction<() => Persisted>

  private constructor(
    private readonly db: Database,
    private readonly st: Statements,
    readonly path: string
  ) {
    this.bootstrapped = this.meta(MetaKey.bootstrapped) === "1"
    this.writeLog = makeLogWriter(db)
    this.persistTx = db.transaction((r: PersistInput) => this.write(r))
    this.bootstrapTx = db.transaction((p: Persisted) => this.writeBootstrap(p))
    this.loadTx = db.transaction(() => this.read())
  }

  load(): Persisted | undefined {
    return guard("load", () => (this.bootstrapped ? this.loadTx.deferred() : undefined))
  }

  bootstrap(persisted: Persisted): void {
    guard("bootstrap", () => this.bootstrapTx.immediate(persisted))
    this.bootstrapped = true
  }

  persist(ready: PersistInput): void {
    // An empty Ready must not cost an fsync.
    if (isNothingToPersist(ready)) return
    guard("persist", () => this.persistTx.immediate(ready))
  }

  lastIndex(): number {
    return guard("lastIndex", () => this.lastPosition().index)
  }

  entries(lo: number, hi: number): Array<Entry> {
    return guard("entries", () => this.st.logRange.all(lo, hi).map(toEntry))
  }

  meta(key: string): string | undefined {
    return guard("meta", () => this.st.metaGet.get(key)?.value)
  }

  pragmas(): StoragePragmas {
    return guard("pragmas", () => readPragmas(this.db))
  }

  close(): void {
    if (this.db.open) this.db.close()
  }

  private claimIdentity(identity: { readonly group: string; readonly node: string }): void {
    const claims: ReadonlyArray<readonly [string, string]> = [
      [MetaKey.group, identity.group],
      [MetaKey.node, identity.node]
    ]
    this.db.transaction(() => {
      for (const [key, value] of claims) this.claim(key, value)
    }).immediate()
  }

  private claim(key: string, value: string): void {
    const stored = this.meta(key)
    if (stored === undefined) this.st.metaPut.run(key, value)
    else if (stored !== value) {
      throw new PersistenceError({
        operation: "open",
        reason: `${this.path} belongs to ${key} ${stored}, not ${value}`
      })
    }
  }

  private read(): Persisted {
    const hard = this.st.hardStateGet.get()
    if (hard === undefined) throw this.corrupt("bootstrapped but no hard state")
    const snapshot = this.readSnapshot()
    const base = snapshot?.meta.index ?? 0
    const entries = this.st.logRange.all(base + 1, Number.MAX_SAFE_INTEGER).map(toEntry)
    entries.forEach((entry, i) => {
      if (entry.index !== base + 1 + i) throw this.corrupt(`log gap before entry ${entry.index}`)
    })
    const hardState: HardState = { term: hard.term, vote: hard.vote, commit: hard.commitIndex }
    return { hardState, snapshot, entries }
  }

  private readSnapshot(): Snapshot | undefined {
    const row = this.st.snapshotGet.get()
    if (row === undefined) return undefined
    const meta = { index: row.idx, term: row.term, config: decodeConfiguration(row.config) }
    return { meta, data: row.data }
  }

  private corrupt(reason: string): PersistenceError {
    return new PersistenceError({ operation: "load", reason: `corrupt store: ${reason}` })
  }

  private writeBootstrap(p: Persisted): void {
    if (this.meta(MetaKey.bootstrapped) === "1") {
      throw new PersistenceError({ operation: "bootstrap", reason: "already bootstrapped" })
    }
    const { snapshot, entries, hardState } = p
    this.writeSteps({ snapshot, truncateFrom: undefined, entries, hardState, compactTo: undefined })
    this.st.metaPut.run(MetaKey.bootstrapped, "1")
  }

  private write(r: PersistInput): void {
    if (!this.bootstrapped) {
      throw new PersistenceError({ operation: "persist", reason: "store not bootstrapped" })
    }
    this.writeSteps(r)
  }

  /** The steps of ready.ts, in its order; the caller holds the transaction. */
  private writeSteps(r: PersistSteps): void {
    this.writeLog(toPersistRequest(r))
  }

  private lastPosition(): LogPosition {
    const row = this.st.logLast.get() ?? this.st.snapshotPosition.get()
    return row === undefined ? logOrigin : { index: row.idx, term: row.term }
  }
}
