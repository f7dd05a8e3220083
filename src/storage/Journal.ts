import Database from "better-sqlite3"
import * as crypto from "node:crypto"
import { Schema } from "effect"
import { decodeEventJson, encodeEventJson, Event } from "../domain/events.js"
import { migrate, type Migration } from "./migrations.js"
import { toPersistenceError } from "./PersistenceError.js"
import { journalCheckpointPages, pageCachePragma, readPragmas, type StoragePragmas } from "./sqliteSettings.js"

/**
 * The event journal: every event applied on this node, appended in order, each row hashed
 * together with the previous row's hash, so an edit, deletion or reordering breaks the chain at
 * its sequence number. Written in the same transaction as the applied index.
 *
 * The journal's rows are those after its base (sm_state): the fold starts from the base's
 * state, and the first row's prev_hash is the base's hash. The base is the empty state at seq
 * 0, a snapshot installed from the leader, or (journal retention) the state at the last pruned
 * event, recorded in journal_meta. Rows at or below the base are no part of the journal: pruned
 * ones, deleted in the background (see JournalPruner), or, on a node that installed a snapshot
 * over its own journal, its own earlier rows, which only the history's readers see (historyOf,
 * page), beside the rows copied into the table history (HistoryBackfill).
 */
/** The columns of a journal row: the journal's, and the history's (copied rows, same shape). */
const rowTable = `(
        seq INTEGER PRIMARY KEY,
        log_index INTEGER NOT NULL,
        log_term INTEGER NOT NULL,
        at INTEGER NOT NULL,
        job_id TEXT,
        user_name TEXT,
        type TEXT NOT NULL,
        event TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      ) STRICT`

const journalMigrations: ReadonlyArray<Migration> = [
  {
    version: 1,
    statements: [
      `CREATE TABLE journal ${rowTable}`,
      `CREATE INDEX journal_job ON journal(job_id)`,
      `CREATE TABLE sm_state (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        applied_index INTEGER NOT NULL,
        base_seq INTEGER NOT NULL,
        base_hash TEXT NOT NULL,
        base_state TEXT
      ) STRICT`
    ]
  },
  {
    version: 2,
    statements: [
      // Set while the base is where retention pruned the journal (not the empty start, not an
      // installed snapshot): the last pruned event's seq, hash and time, and the Raft snapshot
      // that covered it when it was pruned.
      `CREATE TABLE journal_meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        pruned_seq INTEGER NOT NULL,
        pruned_hash TEXT NOT NULL,
        pruned_event_at INTEGER NOT NULL,
        snapshot_index INTEGER NOT NULL,
        snapshot_seq INTEGER NOT NULL,
        pruned_on INTEGER NOT NULL
      ) STRICT`
    ]
  },
  {
    version: 3,
    statements: [
      // On a node that joined by snapshot: the events before its base, copied from a peer and
      // checked against the base's hash (HistoryBackfill), so that it can answer for old jobs.
      // Rows as in journal; not part of the journal's chain walk (audit reads journal only).
      `CREATE TABLE history ${rowTable}`,
      `CREATE INDEX history_job ON history(job_id)`
    ]
  },
  {
    version: 4,
    statements: [
      // The base's state image (up to about half a MB: the open jobs and the recent window) moves
      // out of sm_state, whose applied_index every append updates: SQLite rewrote the image's
      // overflow pages with it, doubling an append's time on a node that had a base image.
      // sm_state.base_state is NULL from here on.
      `CREATE TABLE sm_base (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        state TEXT
      ) STRICT`,
      `INSERT INTO sm_base (id, state) SELECT 0, base_state FROM sm_state WHERE id = 0`,
      `UPDATE sm_state SET base_state = NULL`
    ]
  },
  {
    version: 5,
    statements: [
      // Set while a node that installed a snapshot over a journal of its own copies the events
      // between its own newest row (kept_seq, kept_hash) and the snapshot's base: its own rows
      // stay (in journal, below the base, and in history), only that gap is copied.
      `CREATE TABLE history_gap (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        kept_seq INTEGER NOT NULL,
        kept_hash TEXT NOT NULL
      ) STRICT`
    ]
  }
]

export const genesisHash = "0".repeat(64)

/** A journal row as read, and as a peer serves it for a history (HistoryBackfill). */
export const JournalRow = Schema.Struct({
  seq: Schema.Number,
  logIndex: Schema.Number,
  logTerm: Schema.Number,
  at: Schema.Number,
  jobId: Schema.NullOr(Schema.String),
  userName: Schema.NullOr(Schema.String),
  type: Schema.String,
  event: Schema.String,
  prevHash: Schema.String,
  hash: Schema.String
})
export type JournalRow = typeof JournalRow.Type

/** One event about to be journaled, with the entry it came from. */
export interface JournalInput {
  readonly event: Event
  readonly logIndex: number
  readonly logTerm: number
  readonly at: number
  readonly userName: string | null
}

export interface JournalHead {
  readonly seq: number
  readonly hash: string
}

/**
 * What the history (the events at or below the base) still lacks: the rows `floor` < seq <=
 * `toSeq`, newest first, the row at `toSeq` hashing to `anchor`. `floor` is the node's own newest
 * row when it copies the gap up to a snapshot it installed over its own journal, else 0.
 */
export interface HistoryNeed {
  readonly toSeq: number
  readonly anchor: string
  readonly floor: number
}

/**
 * What addHistory did with a page: stored it; stored it and closed the gap down to the node's
 * own rows ("joined"), or found those rows are not the chain and dropped them; or refused it as
 * stale, fetched for what the history lacked before the journal changed under it.
 */
export type HistoryAdded = "stored" | "joined" | "own rows dropped" | "stale"

/** What opening a journal dropped: `dropped` rows of the history below seq `below`, a hole under them. */
export interface HistoryRepair {
  readonly below: number
  readonly dropped: number
}

/** What the journal's fold starts from: empty, or a snapshot installed from the leader. */
export interface JournalBase {
  readonly seq: number
  readonly hash: string
  readonly state: string | null
}

/**
 * How much of the journal to keep (cnf `journal_retain_events`, `journal_retain_days`); 0 is no
 * limit of that kind, and both 0 keeps everything. When both are set an event is pruned only
 * once it is beyond both. Only events a durable Raft snapshot covers are ever pruned.
 */
export interface JournalRetention {
  /** Keep at least this many newest events. */
  readonly events: number
  /** Keep at least the events this many days older than the newest event (by their `at`). */
  readonly days: number
}

export const keepEverything: JournalRetention = { events: 0, days: 0 }

export const keepsEverything = (r: JournalRetention): boolean => r.events === 0 && r.days === 0

/** Where retention pruned the journal: the base it moved to, and what covered it. */
export interface PruneMark {
  /** The last pruned event: the journal's base seq. */
  readonly seq: number
  /** That event's hash: the chain's anchor, the first kept row's prev_hash. */
  readonly hash: string
  /** That event's time (`at`). */
  readonly eventAt: number
  /** The Raft snapshot that covered it (its point at or above `seq`) when it was pruned. */
  readonly snapshotIndex: number
  readonly snapshotSeq: number
  /** When it was pruned (this node's clock, ms since the epoch). */
  readonly prunedOn: number
}

/** An event as the journal stores it, read back (domain/events.ts). Throws a ParseError. */
export const decodeEvent = decodeEventJson

/**
 * SHA-256 in hex. The one-shot `crypto.hash` (Node 20.12 and later) takes about half the time of
 * a `createHash` object per row (0.4 us against 0.8-1 us), and every node hashes every event.
 */
const sha256Hex: (text: string) => string =
  typeof crypto.hash === "function"
    ? (text) => crypto.hash("sha256", text, "hex")
    : (text) => crypto.createHash("sha256").update(text).digest("hex")

export const rowHash = (prevHash: string, r: Omit<JournalRow, "hash" | "prevHash">): string =>
  sha256Hex(`${prevHash}\n${r.seq}\n${r.logIndex}\n${r.logTerm}\n${r.at}\n${r.jobId ?? ""}\n${r.userName ?? ""}\n${r.type}\n${r.event}`)

/** Which rows to read: bounds are inclusive, except `untilAt` (rows with at < untilAt). */
export interface JournalFilter {
  readonly fromSeq?: number
  readonly toSeq?: number
  readonly jobId?: string
  readonly type?: string
  readonly sinceAt?: number
  readonly untilAt?: number
  readonly limit?: number
}

const filterColumns: ReadonlyArray<readonly [keyof JournalFilter, string]> = [
  ["fromSeq", "seq >= ?"],
  ["toSeq", "seq <= ?"],
  ["jobId", "job_id = ?"],
  ["type", "type = ?"],
  ["sinceAt", "at >= ?"],
  ["untilAt", "at < ?"]
]

const rowColumns = "seq, log_index AS logIndex, log_term AS logTerm, at, job_id AS jobId, user_name AS userName, type, event, prev_hash AS prevHash, hash"

const selectRows = (filter: JournalFilter, table = "journal"): { sql: string; params: Array<unknown> } => {
  const used = filterColumns.filter(([key]) => filter[key] !== undefined)
  const where = used.length ? " WHERE " + used.map(([, clause]) => clause).join(" AND ") : ""
  const limit = filter.limit !== undefined ? " LIMIT " + Math.trunc(filter.limit) : ""
  const sql = `SELECT ${rowColumns} FROM ${table}${where} ORDER BY seq${limit}`
  return { sql, params: used.map(([key]) => filter[key]) }
}

const jobIdOf = (e: Event): string | null => ("jobId" in e ? e.jobId : null)

export class Journal {
  private readonly insert: Database.Statement<[number, number, number, number, string | null, string | null, string, string, string, string]>
  private readonly putState: Database.Statement<[number, number, string]>
  private readonly putImage: Database.Statement<[string | null]>
  private readonly putApplied: Database.Statement<[number]>
  private readonly appendTx: Database.Transaction<(rows: ReadonlyArray<JournalInput>, applied: number) => void>
  private head: JournalHead
  private applied: number
  private base: JournalBase
  private mark: PruneMark | undefined
  /** The node's own newest row below the base while the gap above it is copied (history_gap). */
  private gap: JournalHead | undefined
  private historyTable: boolean | undefined
  /**
   * Set when opening found a hole in the history's run that reaches the base and dropped the rows
   * below it, which the members then copy again (see dropBelowHole); logged by HistoryBackfill.
   */
  readonly historyRepair: HistoryRepair | undefined

  static open(path: string, retention: JournalRetention = keepEverything): Journal {
    try {
      const db = new Database(path, { timeout: 5000 })
      db.pragma("journal_mode = WAL")
      // NORMAL: a crash may lose the newest applied batches, never corrupt. The Raft log still
      // holds those entries (it is compacted only below a snapshot, and `sync` runs before every
      // snapshot), so a restarted node applies them again. This saves an fsync per batch.
      db.pragma("synchronous = NORMAL")
      db.pragma(pageCachePragma)
      db.pragma(`wal_autocheckpoint = ${journalCheckpointPages}`)
      migrate(db, "journal", journalMigrations)
      return new Journal(db, false, retention)
    } catch (error) {
      throw toPersistenceError("open journal", error)
    }
  }

  /** Read-only access beside a running node (audit). */
  static openReadOnly(path: string): Journal {
    try {
      return new Journal(new Database(path, { readonly: true, fileMustExist: true, timeout: 5000 }), true)
    } catch (error) {
      throw toPersistenceError("open journal", error)
    }
  }

  private constructor(
    private readonly db: Database,
    readOnly = false,
    /** What the node may prune (the pruner's setting; a read-only reader keeps everything). */
    readonly retention: JournalRetention = keepEverything
  ) {
    const row = this.readPosition()
    this.applied = row.applied
    this.base = row.base
    this.head = row.head
    this.mark = row.mark
    this.gap = row.gap
    if (readOnly) {
      this.insert = undefined as never
      this.putState = undefined as never
      this.putImage = undefined as never
      this.putApplied = undefined as never
      this.appendTx = undefined as never
      return
    }
    this.insert = db.prepare(
      "INSERT INTO journal (seq, log_index, log_term, at, job_id, user_name, type, event, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)"
    )
    this.putState = db.prepare(
      "INSERT INTO sm_state (id, applied_index, base_seq, base_hash, base_state) VALUES (0,?,?,?,NULL) ON CONFLICT(id) DO UPDATE SET applied_index=excluded.applied_index, base_seq=excluded.base_seq, base_hash=excluded.base_hash"
    )
    this.putImage = db.prepare("INSERT INTO sm_base (id, state) VALUES (0,?) ON CONFLICT(id) DO UPDATE SET state=excluded.state")
    this.putApplied = db.prepare("UPDATE sm_state SET applied_index = ? WHERE id = 0")
    if (!row.stored) this.putBase(0, { seq: 0, hash: genesisHash, state: null })
    this.historyRepair = this.dropBelowHole()
    this.appendTx = db.transaction((rows: ReadonlyArray<JournalInput>, applied: number) => {
      for (const r of rows) this.appendRow(r)
      this.putApplied.run(applied)
    })
  }

  /** The base and the applied index (sm_state), and the base's image in its own table (sm_base). */
  private putBase(appliedIndex: number, base: JournalBase): void {
    this.putState.run(appliedIndex, base.seq, base.hash)
    this.putImage.run(base.state)
  }

  private readPosition(): {
    stored: boolean
    applied: number
    base: JournalBase
    head: JournalHead
    mark: PruneMark | undefined
    gap: JournalHead | undefined
  } {
    // A journal of an older version, opened read-only (audit), may not have sm_base yet.
    const image = this.hasTable("sm_base") ? "(SELECT state FROM sm_base WHERE id = 0)" : "base_state"
    const row = this.db.prepare<[], { applied_index: number; base_seq: number; base_hash: string; base_state: string | null }>(
      `SELECT applied_index, base_seq, base_hash, ${image} AS base_state FROM sm_state WHERE id = 0`
    ).get()
    const base = { seq: row?.base_seq ?? 0, hash: row?.base_hash ?? genesisHash, state: row?.base_state ?? null }
    const last = this.db.prepare<[], JournalHead>("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").get()
    // Rows at or below the base (pruned, or kept under an installed snapshot) are never the head.
    const head = last !== undefined && last.seq > base.seq ? last : { seq: base.seq, hash: base.hash }
    return { stored: row !== undefined, applied: row?.applied_index ?? 0, base, head, mark: this.readMark(), gap: this.readGap() }
  }

  private readGap(): JournalHead | undefined {
    // A journal.db of an older version, opened read-only (not migrated).
    if (!this.hasTable("history_gap")) return undefined
    return this.db.prepare<[], JournalHead>("SELECT kept_seq AS seq, kept_hash AS hash FROM history_gap WHERE id = 0").get()
  }

  private readMark(): PruneMark | undefined {
    // A journal.db written before journal_meta existed, opened read-only (not migrated).
    const table = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal_meta'").get()
    if (table === undefined) return undefined
    return this.db.prepare<[], PruneMark>(
      "SELECT pruned_seq AS seq, pruned_hash AS hash, pruned_event_at AS eventAt, snapshot_index AS snapshotIndex, snapshot_seq AS snapshotSeq, pruned_on AS prunedOn FROM journal_meta WHERE id = 0"
    ).get()
  }

  /**
   * Re-reads base, head and applied index. A read-only reader beside a running node uses it:
   * the node may have appended since, or replaced everything by an installed snapshot.
   */
  refresh(): void {
    const position = this.readPosition()
    this.applied = position.applied
    this.base = position.base
    this.head = position.head
    this.mark = position.mark
    this.gap = position.gap
  }

  appliedIndex(): number {
    return this.applied
  }

  journalHead(): JournalHead {
    return this.head
  }

  journalBase(): JournalBase {
    return this.base
  }

  /** Set when retention pruned the journal: its base is then the last pruned event. */
  pruneMark(): PruneMark | undefined {
    return this.mark
  }

  /** The connection's settings as SQLite reports them (synchronous is NORMAL between syncs). */
  pragmas(): StoragePragmas {
    try {
      return readPragmas(this.db)
    } catch (error) {
      throw toPersistenceError("journal pragmas", error)
    }
  }

  /** Makes everything appended so far durable (before a snapshot lets the Raft log go). */
  sync(): void {
    try {
      // One commit with synchronous=FULL fsyncs the WAL, and with it every earlier commit. A
      // checkpoint would do too, but waits for readers (an audit beside the node).
      this.db.pragma("synchronous = FULL")
      this.putApplied.run(this.applied)
      this.db.pragma("synchronous = NORMAL")
    } catch (error) {
      throw toPersistenceError("journal sync", error)
    }
  }

  /** Appends the events of applied entries and the new applied index, in one transaction. */
  append(rows: ReadonlyArray<JournalInput>, appliedIndex: number): void {
    const saved = this.head
    try {
      this.appendTx.immediate(rows, appliedIndex)
      this.applied = appliedIndex
    } catch (error) {
      this.head = saved
      throw toPersistenceError("journal append", error)
    }
  }

  private appendRow(r: JournalInput): void {
    const row = {
      seq: this.head.seq + 1,
      logIndex: r.logIndex,
      logTerm: r.logTerm,
      at: r.at,
      jobId: jobIdOf(r.event),
      userName: r.userName,
      type: r.event._tag,
      event: encodeEventJson(r.event)
    }
    const hash = rowHash(this.head.hash, row)
    this.insert.run(row.seq, row.logIndex, row.logTerm, row.at, row.jobId, row.userName, row.type, row.event, this.head.hash, hash)
    this.head = { seq: row.seq, hash }
  }

  /**
   * Starts the journal again from a snapshot's state: this node's journal then starts at the
   * snapshot's point, continuing the leader's sequence numbers and hash chain. A node that keeps
   * everything keeps its own rows too (below the new base, where only the history's readers see
   * them), and HistoryBackfill copies just the gap between its newest row and the base; otherwise
   * (retention, or a gap from an earlier install still open) everything before the base goes.
   */
  installBase(base: JournalBase & { readonly state: string }, appliedIndex: number): void {
    const kept = this.keptOnInstall(base)
    const gap = kept !== undefined && kept.seq < base.seq ? kept : undefined
    try {
      this.db.transaction(() => {
        if (kept === undefined) {
          this.db.prepare("DELETE FROM journal").run()
          if (this.hasHistory()) this.db.prepare("DELETE FROM history").run()
        }
        this.db.prepare("DELETE FROM journal_meta").run()
        this.putBase(appliedIndex, base)
        if (gap === undefined) this.db.prepare("DELETE FROM history_gap").run()
        else this.db.prepare<[number, string]>("INSERT OR REPLACE INTO history_gap (id, kept_seq, kept_hash) VALUES (0,?,?)").run(gap.seq, gap.hash)
      }).immediate()
      this.base = base
      this.head = { seq: base.seq, hash: base.hash }
      this.applied = appliedIndex
      this.mark = undefined
      this.gap = gap
    } catch (error) {
      throw toPersistenceError("journal install", error)
    }
  }

  /**
   * The newest row this node holds, when its rows stay under a snapshot installed at `base`: it
   * keeps everything, its rows reach from the base (or seq 1) to its head without a gap, and they
   * are the chain's below `base` as far as it can tell here (the row at the base's seq, when it
   * has it, is the base). Whether the rest links up is checked when the gap is copied.
   */
  private keptOnInstall(base: JournalBase): JournalHead | undefined {
    if (!keepsEverything(this.retention) || this.mark !== undefined || this.gap !== undefined) return undefined
    const top = this.head
    if (top.seq === 0 || top.seq > base.seq) return undefined
    if (top.seq === base.seq && top.hash !== base.hash) return undefined
    // The head is the base when the journal holds nothing after it: held only if copied already.
    return this.heldRow(top.seq)?.hash === top.hash && this.heldRunIsWhole(top.seq) ? top : undefined
  }

  /**
   * Whether the rows this node holds above `floor` and at or below `top` (in `tables`: by default
   * journal and history) run from the lowest of them to `top` without a hole: what keeping them,
   * closing a gap onto them, and trusting a history at open rest on. A count over the rows, at an
   * install, a gap's close or an open, not per page.
   */
  private heldRunIsWhole(top: number, tables: ReadonlyArray<string> = this.heldTables(), floor = 0): boolean {
    const counts = tables.map((table) =>
      this.db
        .prepare<[number, number], { n: number; low: number | null; high: number | null }>(
          `SELECT count(*) AS n, min(seq) AS low, max(seq) AS high FROM ${table} WHERE seq > ? AND seq <= ?`
        )
        .get(floor, top)!
    )
    const n = counts.reduce((sum, t) => sum + t.n, 0)
    const low = Math.min(...counts.map((t) => t.low ?? Number.POSITIVE_INFINITY))
    const high = Math.max(...counts.map((t) => t.high ?? 0))
    return high === top && n === top - low + 1
  }

  /**
   * At open: the history's run that reaches the base (see runToBase) must run without a hole,
   * since the copy only ever extends it downwards and counts it complete once it reaches seq 1.
   * Versions before 731ec81 could store a page fetched before a snapshot install after it (a run
   * cut off from the base), and before e81ee89 a restart deleted the own rows a node kept under
   * a snapshot; either left a hole that nothing would fill. Rows below the highest hole are
   * dropped, so the copy fills from there down. Without a hole this costs one count over an index.
   */
  private dropBelowHole(): HistoryRepair | undefined {
    if (this.base.seq === 0 || !keepsEverything(this.retention) || this.mark !== undefined) return undefined
    const { tables, floor } = this.runToBase()
    if (tables.length === 0 || this.heldRunIsWhole(this.base.seq, tables, floor)) return undefined
    const seqs = tables.map((t) => `SELECT seq FROM ${t} WHERE seq > @floor AND seq <= @top`).join(" UNION ALL ")
    const params = { floor, top: this.base.seq }
    const high = this.db.prepare<[typeof params], { high: number | null }>(`SELECT max(seq) AS high FROM (${seqs})`).get(params)?.high
    if (high === null || high === undefined) return undefined // nothing held there yet
    // Everything goes when even the base's row is missing; else what lies below the lowest row of
    // the top run (the highest row whose predecessor is missing).
    const below = high !== this.base.seq
      ? this.base.seq + 1
      : this.db
        .prepare<[typeof params], { seq: number }>(
          `SELECT seq FROM (SELECT seq, lag(seq) OVER (ORDER BY seq) AS prev FROM (${seqs})) WHERE prev < seq - 1 ORDER BY seq DESC LIMIT 1`
        )
        .get(params)?.seq
    if (below === undefined) return undefined // a row held in both tables, none missing: nothing to drop
    try {
      const dropped = this.db.transaction(() =>
        tables.reduce((n, t) => n + this.db.prepare<[number, number]>(`DELETE FROM ${t} WHERE seq > ? AND seq < ?`).run(floor, below).changes, 0)
      ).immediate()
      return { below, dropped }
    } catch (error) {
      throw toPersistenceError("journal history", error)
    }
  }

  /** The row at `seq` from whichever table holds it (see heldTables). */
  private heldRow(seq: number): JournalRow | undefined {
    for (const table of this.heldTables()) {
      const row = this.db.prepare<[number], JournalRow>(`SELECT ${rowColumns} FROM ${table} WHERE seq = ?`).get(seq)
      if (row !== undefined) return row
    }
    return undefined
  }

  /**
   * Prunes the journal through `base.seq` (retention): the base moves there, with the state
   * folded through it, and journal_meta records it. One short transaction: the rows stay until
   * deletePruned removes them, a batch at a time. Does nothing, and says so, unless the row at
   * `base.seq` is in the journal with hash `base.hash`.
   */
  moveBase(base: JournalBase & { readonly state: string }, at: Pick<PruneMark, "eventAt" | "snapshotIndex" | "snapshotSeq">): boolean {
    if (base.seq <= this.base.seq || base.seq > this.head.seq || at.snapshotSeq < base.seq) return false
    const mark: PruneMark = { seq: base.seq, hash: base.hash, eventAt: at.eventAt, snapshotIndex: at.snapshotIndex, snapshotSeq: at.snapshotSeq, prunedOn: Date.now() }
    try {
      const moved = this.db.transaction(() => {
        const row = this.db.prepare<[number], { hash: string }>("SELECT hash FROM journal WHERE seq = ?").get(base.seq)
        if (row?.hash !== base.hash) return false
        this.putBase(this.applied, base)
        this.db.prepare<[number, string, number, number, number, number]>(
          "INSERT OR REPLACE INTO journal_meta (id, pruned_seq, pruned_hash, pruned_event_at, snapshot_index, snapshot_seq, pruned_on) VALUES (0,?,?,?,?,?,?)"
        ).run(mark.seq, mark.hash, mark.eventAt, mark.snapshotIndex, mark.snapshotSeq, mark.prunedOn)
        return true
      }).immediate()
      if (!moved) return false
      this.base = base
      this.mark = mark
      return true
    } catch (error) {
      throw toPersistenceError("journal prune", error)
    }
  }

  /**
   * Deletes up to `limit` of the oldest pruned rows (at or below the base); returns how many. Only
   * under a prune mark: without one, the journal's rows below the base are the node's own, kept
   * under a snapshot it installed (its history), not pruned ones.
   */
  deletePruned(limit: number): number {
    if (this.mark === undefined) return 0
    try {
      return this.db.prepare<[number, number]>("DELETE FROM journal WHERE seq <= ? AND seq < (SELECT min(seq) FROM journal) + ?").run(this.base.seq, limit).changes
    } catch (error) {
      throw toPersistenceError("journal prune", error)
    }
  }

  /** The latest `at` among the rows fromSeq..toSeq, or undefined when there are none. */
  latestAt(fromSeq: number, toSeq: number): number | undefined {
    return this.db.prepare<[number, number], { at: number | null }>("SELECT max(at) AS at FROM journal WHERE seq >= ? AND seq <= ?").get(fromSeq, toSeq)?.at ?? undefined
  }

  /**
   * Up to `limit` rows at or below `toSeq`, newest first, for a peer filling its history: from
   * the journal above its base, else from what this node holds below it (its history), as far as
   * those rows run without a gap; none unless it holds the row at `toSeq`.
   */
  page(toSeq: number, limit: number): Array<JournalRow> {
    const n = Math.max(0, Math.trunc(limit))
    if (toSeq > this.base.seq) {
      return this.db
        .prepare<[number, number, number], JournalRow>(`SELECT ${rowColumns} FROM journal WHERE seq <= ? AND seq > ? ORDER BY seq DESC LIMIT ?`)
        .all(toSeq, this.base.seq, n)
    }
    const rows = this.heldBelowBase(toSeq, n)
    let end = 0
    while (end < rows.length && rows[end].seq === toSeq - end) end++
    return rows.slice(0, end)
  }

  /**
   * The tables that hold this node's rows at or below its base: the history (copied rows), and the
   * journal's own rows kept under a snapshot it installed, unless a prune mark says the journal's
   * rows there are pruned ones waiting to be deleted. Every history table row is at or below the base.
   */
  private heldTables(): Array<"history" | "journal"> {
    return [...(this.hasHistory() ? ["history" as const] : []), ...(this.mark === undefined ? ["journal" as const] : [])]
  }

  /** `select` (a query with `@` parameters, over the table it is given) over each table in `tables`, as one. */
  private heldRows<P extends object>(tables: ReadonlyArray<string>, select: (table: string) => string, order: string, params: P): Array<JournalRow> {
    if (tables.length === 0) return []
    const sql = tables.length === 1 ? select(tables[0]) : `${tables.map((t) => `SELECT * FROM (${select(t)})`).join(" UNION ALL ")} ${order}`
    return this.db.prepare<[P], JournalRow>(sql).all(params)
  }

  /**
   * Where the history's run that reaches the base lies: the rows above `floor` in `tables`. While a
   * gap is copied, only the copied rows above the node's own count (the gap lies between them).
   */
  private runToBase(): { tables: Array<"history" | "journal">; floor: number } {
    if (this.gap === undefined) return { tables: this.heldTables(), floor: 0 }
    return { tables: this.heldTables().filter((t) => t === "history"), floor: this.gap.seq }
  }

  /** Up to `limit` rows at or below `toSeq` (at most the base's seq) from the tables that hold them, newest first. */
  private heldBelowBase(toSeq: number, limit: number): Array<JournalRow> {
    const select = (t: string) => `SELECT ${rowColumns} FROM ${t} WHERE seq <= @toSeq ORDER BY seq DESC LIMIT @limit`
    return this.heldRows(this.heldTables(), select, "ORDER BY seq DESC LIMIT @limit", { toSeq, limit })
  }

  /**
   * What the history still lacks, the run nearest the base first (HistoryBackfill), or undefined
   * when nothing: the node has no base, its history reaches seq 1, or the base is where its own
   * retention pruned (the operator chose to forget; with retention nothing is copied at all).
   */
  historyNeed(): HistoryNeed | undefined {
    if (this.base.seq === 0 || !keepsEverything(this.retention) || this.mark !== undefined) return undefined
    const floor = this.gap?.seq ?? 0
    const low = this.historyLow()
    if (low === undefined) return { toSeq: this.base.seq, anchor: this.base.hash, floor }
    if (low.seq <= 1) return undefined
    return { toSeq: low.seq - 1, anchor: low.prevHash, floor }
  }

  /**
   * Whether this node joined by snapshot and still lacks events before its base, which
   * HistoryBackfill copies from the other members (see historyNeed).
   */
  historyIncomplete(): boolean {
    return this.historyNeed() !== undefined
  }

  /**
   * The lowest row of the history's run that reaches the base without a gap, if it holds any:
   * while a gap is copied, the lowest copied row above the node's own; else the lowest it holds.
   */
  historyLow(): JournalRow | undefined {
    const { tables, floor } = this.runToBase()
    const select = (t: string) => `SELECT ${rowColumns} FROM ${t} WHERE seq > @floor AND seq <= @baseSeq ORDER BY seq LIMIT 1`
    return this.heldRows(tables, select, "ORDER BY seq LIMIT 1", { floor, baseSeq: this.base.seq })[0]
  }

  /**
   * Stores rows below the base, already checked against the chain below `need` (HistoryBackfill),
   * if `need` is still what the history lacks: a page fetched before a snapshot was installed
   * (which moves the base, keeps or drops what the node held) would otherwise land as a run the
   * history cannot link to, and the copy would go on below it, leaving a hole. When the rows
   * reach down to the node's own rows, the gap is closed: the lowest copied row must link to its
   * own newest one, and its own rows must run without a hole ("joined"); if not, its own rows go
   * ("own rows dropped": never expected, the copy then goes on below).
   */
  addHistory(rows: ReadonlyArray<JournalRow>, need: HistoryNeed): HistoryAdded {
    const now = this.historyNeed()
    if (now === undefined || now.toSeq !== need.toSeq || now.anchor !== need.anchor || now.floor !== need.floor) return "stale"
    try {
      const insert = this.db.prepare(
        "INSERT OR REPLACE INTO history (seq, log_index, log_term, at, job_id, user_name, type, event, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)"
      )
      const gap = this.gap
      const added = this.db.transaction((): HistoryAdded => {
        for (const r of rows) insert.run(r.seq, r.logIndex, r.logTerm, r.at, r.jobId, r.userName, r.type, r.event, r.prevHash, r.hash)
        if (gap === undefined) return "stored"
        const above = this.db.prepare<[number], { seq: number; prevHash: string }>(
          "SELECT seq, prev_hash AS prevHash FROM history WHERE seq > ? ORDER BY seq LIMIT 1"
        ).get(gap.seq)
        if (above?.seq !== gap.seq + 1) return "stored"
        this.db.prepare("DELETE FROM history_gap").run()
        if (above.prevHash === gap.hash && this.heldRunIsWhole(gap.seq)) return "joined"
        this.db.prepare("DELETE FROM journal WHERE seq <= ?").run(gap.seq)
        this.db.prepare("DELETE FROM history WHERE seq <= ?").run(gap.seq)
        return "own rows dropped"
      }).immediate()
      if (added === "joined" || added === "own rows dropped") this.gap = undefined
      return added
    } catch (error) {
      throw toPersistenceError("journal history", error)
    }
  }

  /**
   * One job's rows at or below the base, in order: from the history's run that reaches the base
   * (see historyLow), so that a job whose first row is here has all its rows here or after the base.
   */
  historyOf(jobId: string): Array<JournalRow> {
    const { tables, floor } = this.runToBase()
    const select = (t: string) => `SELECT ${rowColumns} FROM ${t} WHERE job_id = @jobId AND seq > @floor AND seq <= @baseSeq ORDER BY seq`
    return this.heldRows(tables, select, "ORDER BY seq", { jobId, floor, baseSeq: this.base.seq })
  }

  /** A journal.db opened read-only may predate the history table (a writable one is migrated). */
  private hasHistory(): boolean {
    this.historyTable ??= this.hasTable("history")
    return this.historyTable
  }
  private hasTable(name: string): boolean {
    return this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined
  }


  /**
   * The newest `limit` rows of event type `type` after the base, newest first: read backwards
   * from the head, so it stops at the last one it needs (there is no index on type).
   */
  newestOfType(type: string, limit: number): Array<JournalRow> {
    return this.db
      .prepare<[string, number, number], JournalRow>(`SELECT ${rowColumns} FROM journal WHERE type = ? AND seq > ? ORDER BY seq DESC LIMIT ?`)
      .all(type, this.base.seq, Math.trunc(limit))
  }

  /** The journal's rows (those after its base) that `filter` selects, in order. */
  rows(filter: JournalFilter = {}): Array<JournalRow> {
    const fromSeq = Math.max(filter.fromSeq ?? 0, this.base.seq + 1)
    const { sql, params } = selectRows({ ...filter, fromSeq })
    return this.db.prepare<Array<unknown>, JournalRow>(sql).all(...params)
  }

  close(): void {
    if (this.db.open) this.db.close()
  }
}
