// The writes of raft.db, shared by the synchronous store (RaftStorage.ts, on the caller's thread)
// and the writer thread (raftLogWorker.ts). No `effect` import here or in what it imports: the
// writer thread loads only better-sqlite3 and these few small modules. Failures are plain
// errors (StorageInvariantViolation for a write that breaks the log); callers type them.
import type Database from "better-sqlite3"
import type { HardState } from "../domain/raft/types.js"
import {
  checkAppend,
  checkCommit,
  checkCompaction,
  checkSnapshotAdvances,
  type LogPosition,
  logOrigin
} from "./logInvariants.js"
import { raftSql } from "./raftSchema.js"
import { pageCachePragma } from "./sqliteSettings.js"

/** A snapshot as stored: its configuration already JSON. */
export interface StoredSnapshot {
  readonly index: number
  readonly term: number
  readonly config: string
  readonly data: string
}

/**
 * One Ready's writes as plain data: what crosses to the writer thread. The entries to append are
 * parallel arrays (index, term, payload JSON encoded once on the actor's thread): arrays of
 * numbers and strings clone several times faster than an array of objects. The steps run in
 * ready.ts's order: snapshot, truncateFrom, entries, hardState, compactTo.
 */
export interface PersistRequest {
  readonly snapshot: StoredSnapshot | undefined
  readonly truncateFrom: number | undefined
  readonly indexes: ReadonlyArray<number>
  readonly terms: ReadonlyArray<number>
  readonly payloads: ReadonlyArray<string>
  readonly hardState: HardState | undefined
  readonly compactTo: number | undefined
}

/** Nothing to write: such a Ready must not cost a transaction (an fsync). */
export const isNothingToPersist = (r: {
  readonly snapshot: unknown
  readonly truncateFrom: number | undefined
  readonly entries: ReadonlyArray<unknown>
  readonly hardState: unknown
  readonly compactTo: number | undefined
}): boolean =>
  r.snapshot === undefined &&
  r.truncateFrom === undefined &&
  r.entries.length === 0 &&
  r.hardState === undefined &&
  r.compactTo === undefined

/**
 * The durability settings of every connection that writes raft.db. Throws a plain Error when
 * the file cannot be put in WAL mode.
 */
export const configureConnection = (db: Database, busyTimeoutMs: number): void => {
  const journalMode = db.pragma("journal_mode = WAL", { simple: true })
  // ":memory:" answers "memory" and runs the same code; a file must really be in WAL mode.
  if (journalMode !== "wal" && !db.memory) throw new Error(`journal_mode is ${journalMode}`)
  // FULL: every commit fsyncs the WAL, so what persist acknowledged survives power loss.
  db.pragma("synchronous = FULL")
  // On macOS plain fsync leaves data in the drive's cache; elsewhere this is a no-op.
  db.pragma("fullfsync = ON")
  db.pragma("foreign_keys = ON")
  db.pragma(`busy_timeout = ${Math.trunc(busyTimeoutMs)}`)
  db.pragma(pageCachePragma)
}


/**
 * The steps of one PersistRequest on `db`, with the log checks of logInvariants.ts; the caller
 * holds the transaction. The tables must exist (the schema is migrated before).
 */
export const makeLogWriter = (db: Database): ((r: PersistRequest) => void) => {
  const hardStatePut = db.prepare<[number, string | null, number]>(raftSql.hardStatePut)
  const snapshotPosition = db.prepare<[], { idx: number; term: number }>(raftSql.snapshotPosition)
  const snapshotPut = db.prepare<[number, number, string, string]>(raftSql.snapshotPut)
  const logLast = db.prepare<[], { idx: number; term: number }>(raftSql.logLast)
  const logInsert = db.prepare<[number, number, string]>(raftSql.logInsert)
  const logDeleteBelow = db.prepare<[number]>(raftSql.logDeleteBelow)
  const logDeleteFrom = db.prepare<[number]>(raftSql.logDeleteFrom)

  const lastPosition = (): LogPosition => {
    const row = logLast.get() ?? snapshotPosition.get()
    return row === undefined ? logOrigin : { index: row.idx, term: row.term }
  }

  return (r) => {
    if (r.snapshot !== undefined) {
      const s = r.snapshot
      checkSnapshotAdvances(s.index, snapshotPosition.get()?.idx ?? 0)
      snapshotPut.run(s.index, s.term, s.config, s.data)
      // The snapshot replaces the log up to its index (ready.ts); entries after it stay unless
      // the core also sends truncateFrom because they do not follow it.
      logDeleteBelow.run(s.index + 1)
    }
    if (r.truncateFrom !== undefined) logDeleteFrom.run(r.truncateFrom)
    const { indexes, terms, payloads } = r
    if (indexes.length > 0) {
      checkAppend(lastPosition(), indexes.map((index, i) => ({ index, term: terms[i] })))
      for (let i = 0; i < indexes.length; i++) logInsert.run(indexes[i], terms[i], payloads[i])
    }
    if (r.hardState !== undefined) {
      const h = r.hardState
      checkCommit(h.commit, lastPosition())
      hardStatePut.run(h.term, h.vote, h.commit)
    }
    if (r.compactTo !== undefined) {
      checkCompaction(r.compactTo, snapshotPosition.get()?.idx ?? 0)
      logDeleteBelow.run(r.compactTo)
    }
  }
}

// ------------------------------------------------------------------ the writer thread's protocol

/** What the writer thread is started with (workerData). */
export interface WriterData {
  readonly path: string
  readonly busyTimeoutMs: number
}

/** A failure on the writer thread, as data: `invariant` marks a StorageInvariantViolation. */
export interface WriterFailure {
  readonly invariant: boolean
  readonly message: string
  /** SQLite's code (SQLITE_FULL, SQLITE_IOERR_FSYNC, ...) when there is one. */
  readonly code: string | undefined
}

export type ToWriter =
  | { readonly _tag: "Persist"; readonly id: number; readonly request: PersistRequest }
  | { readonly _tag: "Pragmas"; readonly id: number }
  /** Close the connection and end the thread; sent last, after every reply came back. */
  | { readonly _tag: "Close" }

export type FromWriter =
  | { readonly _tag: "Opened" }
  | { readonly _tag: "OpenFailed"; readonly failure: WriterFailure }
  /** `Persist`: the transaction committed (fsync done) unless `failure` is set. */
  | { readonly _tag: "Done"; readonly id: number; readonly failure?: WriterFailure; readonly value?: unknown }

export const describeFailure = (error: unknown, invariant: boolean): WriterFailure => {
  const code = (error as { code?: unknown } | null)?.code
  return {
    invariant,
    message: error instanceof Error ? error.message : String(error),
    code: typeof code === "string" ? code : undefined
  }
}
