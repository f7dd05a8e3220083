import Database from "better-sqlite3"
import { Effect, type Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { Journal } from "../storage/Journal.js"
import { AuditError } from "./errors.js"

/** The Raft snapshot stored in raft.db: `data` is the snapshot image JSON, {state, head}. */
export interface RaftSnapshot {
  readonly index: number
  readonly term: number
  readonly data: string
}

const codes: Record<string, string> = { ENOENT: "no such file or directory", EACCES: "permission denied", ENOTDIR: "not a directory" }

const reason = (e: unknown): string => {
  const code = (e as NodeJS.ErrnoException).code
  return code !== undefined && code in codes ? codes[code] : e instanceof Error ? e.message : String(e)
}

const checkDir = (dir: string): void => {
  let stat: fs.Stats
  try {
    stat = fs.statSync(dir)
  } catch (e) {
    throw new AuditError({ message: `${dir}: cannot read the data directory (${reason(e)})` })
  }
  if (!stat.isDirectory()) throw new AuditError({ message: `${dir}: not a directory` })
  if (!fs.existsSync(path.join(dir, "journal.db"))) {
    throw new AuditError({ message: `${dir}: no journal.db here; is it a cluster_mgr data directory (cluster_mgr_tmp_data_path)?` })
  }
}

/**
 * Opens a node's journal read-only: SQLite's WAL lets this run beside the node that writes it.
 * The journal is closed when the scope closes.
 */
export const openJournal = (dir: string): Effect.Effect<Journal, AuditError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        checkDir(dir)
        return Journal.openReadOnly(path.join(dir, "journal.db"))
      },
      catch: (e) => (e instanceof AuditError ? e : new AuditError({ message: `${path.join(dir, "journal.db")}: cannot read (${reason(e)})` }))
    }),
    (journal) => Effect.sync(() => journal.close())
  )

/** The latest Raft snapshot in `dir`/raft.db; undefined when there is none (or no raft.db). Throws an AuditError. */
export const readRaftSnapshotNow = (dir: string): RaftSnapshot | undefined => {
  const file = path.join(dir, "raft.db")
  try {
    if (!fs.existsSync(file)) return undefined
    const db = new Database(file, { readonly: true, fileMustExist: true, timeout: 5000 })
    try {
      const row = db.prepare<[], RaftSnapshot>("SELECT idx AS \"index\", term, data FROM snapshot WHERE id = 0").get()
      // A bootstrapped store holds an empty snapshot at index 0: nothing to compare.
      return row && row.data !== "" ? row : undefined
    } finally {
      db.close()
    }
  } catch (e) {
    throw new AuditError({ message: `${file}: cannot read the snapshot (${reason(e)})` })
  }
}

/** The latest Raft snapshot in `dir`/raft.db; undefined when there is none (or no raft.db). */
export const readRaftSnapshot = (dir: string): Effect.Effect<RaftSnapshot | undefined, AuditError> =>
  Effect.try({
    try: () => readRaftSnapshotNow(dir),
    catch: (e) => (e instanceof AuditError ? e : new AuditError({ message: `${path.join(dir, "raft.db")}: cannot read the snapshot (${reason(e)})` }))
  })
