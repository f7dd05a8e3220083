import type { Migration } from "./migrations.js"

/**
 * The Raft tables. Single-row tables carry `id = 0` with a CHECK so a second row cannot
 * appear; STRICT makes SQLite reject a value of the wrong type instead of storing it.
 */
export const raftMigrations: ReadonlyArray<Migration> = [
  {
    version: 1,
    statements: [
      `CREATE TABLE hard_state (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        term INTEGER NOT NULL,
        vote TEXT,
        commit_index INTEGER NOT NULL
      ) STRICT`,
      `CREATE TABLE raft_log (
        idx INTEGER PRIMARY KEY,
        term INTEGER NOT NULL,
        payload TEXT NOT NULL
      ) STRICT`,
      `CREATE TABLE snapshot (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        idx INTEGER NOT NULL,
        term INTEGER NOT NULL,
        config TEXT NOT NULL,
        data TEXT NOT NULL
      ) STRICT`,
      `CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT`
    ]
  }
]

/** Keys of the `meta` table. */
export const MetaKey = {
  bootstrapped: "bootstrapped",
  group: "group",
  node: "node"
} as const

export interface HardStateRow {
  readonly term: number
  readonly vote: string | null
  readonly commitIndex: number
}

export interface LogRow {
  readonly idx: number
  readonly term: number
  readonly payload: string
}

export interface SnapshotRow {
  readonly idx: number
  readonly term: number
  readonly config: string
  readonly data: string
}

/** Every statement the store runs, prepared once when it opens. */
export const raftSql = {
  hardStateGet: "SELECT term, vote, commit_index AS commitIndex FROM hard_state WHERE id = 0",
  hardStatePut: `INSERT INTO hard_state (id, term, vote, commit_index) VALUES (0, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE
    SET term = excluded.term, vote = excluded.vote, commit_index = excluded.commit_index`,
  snapshotGet: "SELECT idx, term, config, data FROM snapshot WHERE id = 0",
  snapshotPosition: "SELECT idx, term FROM snapshot WHERE id = 0",
  snapshotPut: `INSERT INTO snapshot (id, idx, term, config, data) VALUES (0, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE
    SET idx = excluded.idx, term = excluded.term, config = excluded.config, data = excluded.data`,
  logLast: "SELECT idx, term FROM raft_log ORDER BY idx DESC LIMIT 1",
  logRange: "SELECT idx, term, payload FROM raft_log WHERE idx >= ? AND idx < ? ORDER BY idx",
  logInsert: "INSERT INTO raft_log (idx, term, payload) VALUES (?, ?, ?)",
  logDeleteBelow: "DELETE FROM raft_log WHERE idx < ?",
  logDeleteFrom: "DELETE FROM raft_log WHERE idx >= ?",
  metaGet: "SELECT value FROM meta WHERE key = ?",
  metaPut: `INSERT INTO meta (key, value) VALUES (?, ?)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value`
} as const
