// Settings every SQLite connection cluster_mgr keeps open shares (raft.db on the actor's thread and
// on the writer thread, journal.db), and how to read them back. No `effect` import: the writer
// thread loads this module.
import type Database from "better-sqlite3"

/**
 * Each connection's page cache, in KiB: SQLite's own default. better-sqlite3 builds SQLite with a
 * 16 MB default (`SQLITE_DEFAULT_CACHE_SIZE=-16000`), and a busy node fills it: both files are
 * written in small appends, so the cache holds mostly pages that are not read again, and raft.db's
 * is emptied anyway each time the other thread's connection has written (WAL). Measured with 3
 * nodes at concurrency 64 (20-25k jobs): the main thread's malloc heap 23-28 MB against 9.3-9.6 MB.
 */
export const pageCacheKiB = 2048

/** `PRAGMA cache_size` takes KiB as a negative number (a positive one counts pages). */
export const pageCachePragma = `cache_size = -${pageCacheKiB}`

/**
 * journal.db's checkpoint threshold in WAL pages (SQLite's default is 1000). The node's thread
 * runs each checkpoint as a commit crosses it, two fsyncs (WAL, then the database) and the copy:
 * a stall in proportion to the pages, while the total over a run stays about the same (a
 * synthetic run of the journal's transactions: 2-3 ms at 100 pages, 15 ms at 1000, 65 ms at
 * 4000). Under load a 1000-page checkpoint came about every 1.25 s and held up every request in
 * flight on that node. Measured with bench/emit.ts, interleaved: the p99 at concurrency 1 lower
 * in 6 of 7 rounds (5.4-9.9 ms against 8.7-12.7), at 16 lower in 5 of 7 (on average 32.1 against
 * 35.3 ms), jobs/s within the noise. raft.db keeps SQLite's default: a follower writes it inline,
 * but the leader commits with either follower, and the same change there showed nothing.
 */
export const journalCheckpointPages = 100

/** The durability settings in force on the connection, as SQLite reports them. */
export interface StoragePragmas {
  readonly journalMode: string
  /** 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA. */
  readonly synchronous: number
  readonly foreignKeys: boolean
  readonly busyTimeoutMs: number
  /** The page cache's limit in KiB. */
  readonly cacheKiB: number
  /** WAL pages at which a commit runs a checkpoint (0: never). */
  readonly walAutocheckpoint: number
}

export const readPragmas = (db: Database): StoragePragmas => {
  const read = (name: string) => db.pragma(name, { simple: true })
  const cacheSize = Number(read("cache_size"))
  return {
    journalMode: String(read("journal_mode")),
    synchronous: Number(read("synchronous")),
    foreignKeys: Number(read("foreign_keys")) === 1,
    busyTimeoutMs: Number(read("busy_timeout")),
    // Negative: KiB; positive: pages.
    cacheKiB: cacheSize < 0 ? -cacheSize : (cacheSize * Number(read("page_size"))) / 1024,
    walAutocheckpoint: Number(read("wal_autocheckpoint"))
  }
}
