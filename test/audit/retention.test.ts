import Database from "better-sqlite3"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as path from "node:path"
import { decodeImage, StateMachine } from "../../src/actors/StateMachine.js"
import type { RaftSnapshot } from "../../src/audit/DataDir.js"
import { type VerifyReport, verifyJournal } from "../../src/audit/verify.js"
import { encodeCommand, type StateCommand } from "../../src/domain/jobs.js"
import type { Entry } from "../../src/domain/raft/types.js"
import { toJson } from "../../src/domain/state.js"
import { Journal, type JournalRetention } from "../../src/storage/Journal.js"
import { removeTmpDirs, tmpDir } from "./workload.js"

/**
 * Journal retention at the state machine, driven as RaftNode drives it: entries applied in
 * batches, a snapshot taken at an applied index and stored in raft.db before anything more is
 * applied (ready.ts). Real SQLite files; the audit's verify reads them read-only.
 */

const hour = 3_600_000
const t0 = 1_700_000_000_000

class Driver {
  journal: Journal
  sm: StateMachine
  index = 0
  /** raft.db's snapshot. */
  snapshot: RaftSnapshot | undefined
  private taken: RaftSnapshot | undefined

  constructor(
    readonly file: string,
    readonly retention: JournalRetention
  ) {
    this.journal = Journal.open(file, retention)
    this.sm = new StateMachine(this.journal)
  }

  /** Applies `count` entries, `batch` per apply: job submissions and their progress, `step` ms apart. */
  apply(count: number, batch = 1, step = 1000): void {
    for (let done = 0; done < count; done += batch) {
      // The Ready carrying the snapshot taken last is persisted before the next apply.
      if (this.taken !== undefined) [this.snapshot, this.taken] = [this.taken, undefined]
      const entries: Array<Entry> = []
      for (let i = 0; i < Math.min(batch, count - done); i++) {
        this.index++
        const at = t0 + this.index * step
        const command: StateCommand =
          this.index % 2 === 1
            ? { _tag: "SubmitJob", jobType: "manual", userName: `u${this.index % 3}`, paras: { n: this.index }, at }
            : { _tag: "ProgressJob", jobId: String(Math.max(1, Math.floor(this.index / 2))), memo: { step: this.index }, at }
        entries.push({ index: this.index, term: 1, payload: { _tag: "Command", data: encodeCommand(command) } })
      }
      this.sm.apply(entries)
      this.checkInvariants()
    }
  }

  takeSnapshot(): void {
    this.taken = { index: this.sm.appliedIndex(), term: 1, data: this.sm.snapshotImage() }
  }

  /** Applies `count` entries with a snapshot every `every` of them. */
  run(count: number, every: number, batch = 1, step = 1000): void {
    for (let done = 0; done < count; done += every) {
      this.apply(Math.min(every, count - done), batch, step)
      this.takeSnapshot()
    }
  }

  /** Never is an event above raft.db's snapshot pruned. */
  checkInvariants(): void {
    const base = this.journal.journalBase().seq
    if (base > 0 && this.journal.pruneMark() !== undefined) {
      expect(this.snapshot).toBeDefined()
      expect(base).toBeLessThanOrEqual(decodeImage(this.snapshot!.data).head.seq)
    }
  }

  restart(): void {
    const state = toJson(this.sm.state)
    this.journal.close()
    this.journal = Journal.open(this.file, this.retention)
    this.sm = new StateMachine(this.journal)
    expect(toJson(this.sm.state)).toEqual(state)
  }

  /** What a reader sees: the journal's rows, after its base. */
  kept(): { base: number; head: number; rows: number } {
    return { base: this.journal.journalBase().seq, head: this.journal.journalHead().seq, rows: this.journal.rows().length }
  }

  /** Rows in the table, pruned ones not yet deleted included. */
  stored(): { count: number; min: number | null } {
    const db = new Database(this.file, { readonly: true })
    try {
      return db.prepare<[], { count: number; min: number | null }>("SELECT count(*) AS count, min(seq) AS min FROM journal").get()!
    } finally {
      db.close()
    }
  }

  verify(): Either.Either<VerifyReport, unknown> {
    const reader = Journal.openReadOnly(this.file)
    try {
      return verifyJournal(reader, this.snapshot)
    } finally {
      reader.close()
    }
  }

  close(): void {
    this.journal.close()
  }
}

const driver = (retention: JournalRetention) => new Driver(path.join(tmpDir("cm-retention-"), "journal.db"), retention)

afterAll(removeTmpDirs)

describe("journal retention", () => {
  it("keeps everything by default: the journal starts at seq 1, nothing is marked pruned", () => {
    const d = driver({ events: 0, days: 0 })
    d.run(600, 20)
    d.apply(5)
    expect(d.kept()).toEqual({ base: 0, head: 600 + 5, rows: 605 })
    expect(d.stored()).toEqual({ count: 605, min: 1 })
    expect(d.journal.pruneMark()).toBeUndefined()
    expect(Either.getOrThrow(d.verify()).pruned).toBeNull()
    d.close()
  })

  it("with journal_retain_events N keeps about the N newest events, never one above raft.db's snapshot", () => {
    const d = driver({ events: 100, days: 0 })
    for (let round = 0; round < 30; round++) {
      d.run(20, 20)
      const { base, head, rows } = d.kept()
      expect(rows).toBe(head - base)
      expect(rows).toBeGreaterThanOrEqual(Math.min(head, 100))
    }
    d.apply(1)
    const { base, head, rows } = d.kept()
    // The limit trails the head by N, or the snapshot point when that is lower: within a
    // snapshot interval (20 entries, one event each) and a step of N.
    expect(rows).toBeGreaterThanOrEqual(100)
    expect(rows).toBeLessThanOrEqual(100 + 2 * 20)
    // The pruned rows are deleted at the next apply; readers never saw them.
    expect(d.stored().min).toBeLessThanOrEqual(base)
    expect(d.journal.rows()[0].seq).toBe(base + 1)
    d.apply(1)
    expect(d.stored().min).toBe(base + 1)
    const mark = d.journal.pruneMark()!
    expect(mark.seq).toBe(base)
    expect(mark.snapshotSeq).toBeGreaterThanOrEqual(base)
    const report = Either.getOrThrow(d.verify())
    expect(report).toMatchObject({ baseSeq: base, lastSeq: head + 1, pruned: { seq: base } })
    expect(report.checkpoint).not.toBeNull()
    d.close()
  })

  it("prunes to the snapshot's own point with its image as the base when N is below a snapshot interval", () => {
    const d = driver({ events: 5, days: 0 })
    d.run(200, 50)
    // At first the limit (head - 5) is below the snapshot's point (seq 200): one fold goes
    // there, once for this snapshot.
    d.apply(3)
    expect(d.kept().base).toBe(196)
    // Once the limit reaches the point, the snapshot's image is the base as it is.
    d.apply(7)
    const { base } = d.kept()
    expect(base).toBe(200)
    expect(d.journal.journalBase().state).toBe(d.snapshot!.data)
    expect(d.verify()).toSatisfy(Either.isRight)
    d.close()
  })

  it("survives restarts: the base state folds back to the same state, and pruning goes on", () => {
    const d = driver({ events: 60, days: 0 })
    d.run(300, 25, 3)
    d.restart()
    expect(d.verify()).toSatisfy(Either.isRight)
    const before = d.kept().base
    d.run(300, 25, 3)
    d.restart()
    d.apply(4)
    expect(d.kept().base).toBeGreaterThan(before)
    expect(d.kept().rows).toBeGreaterThanOrEqual(60)
    // The snapshot taken before the restart is not known to the new pruner; the next one is.
    d.takeSnapshot()
    d.apply(1)
    expect(d.kept().rows).toBe(60)
    expect(d.verify()).toSatisfy(Either.isRight)
    d.close()
  })

  it("with journal_retain_days keeps every event less than D days older than the newest", () => {
    const d = driver({ events: 0, days: 1 })
    // One entry an hour: a day is 24 of them.
    d.run(24 * 10, 12, 1, hour)
    d.apply(1, 1, hour)
    const rows = d.journal.rows()
    const cutoff = rows[rows.length - 1].at - 24 * hour
    // The snapshot covers more than a day: exactly the events older than a day went.
    expect(d.kept().base).toBeGreaterThan(0)
    expect(d.journal.pruneMark()!.eventAt).toBe(cutoff - hour)
    expect(rows[0].at).toBe(cutoff)
    expect(rows).toHaveLength(25)
    expect(d.verify()).toSatisfy(Either.isRight)
    d.close()
  })

  it("with both keys set, an event goes only once it is beyond both", () => {
    const d = driver({ events: 30, days: 1 })
    d.run(24 * 6, 12, 1, hour)
    d.apply(1, 1, hour)
    // A day is 25 events here, fewer than N: N decides.
    expect(d.kept().rows).toBe(30)
    const e = driver({ events: 10, days: 1 })
    e.run(24 * 6, 12, 1, hour)
    e.apply(1, 1, hour)
    // N is less than a day's events: the day decides.
    expect(e.kept().rows).toBe(25)
    d.close()
    e.close()
  })

  it("deletes pruned rows a bounded batch per apply, and readers never see them", () => {
    const d = driver({ events: 0, days: 0 })
    d.run(5000, 5000, 100)
    d.close()
    // Retention switched on over a long journal: the base moves at the next snapshot at once
    // (the image is the base), the rows below it go a batch per apply.
    const e = new Driver(d.file, { events: 1, days: 0 })
    e.snapshot = { index: 5000, term: 1, data: e.sm.snapshotImage() }
    e.index = 5000
    e.apply(1)
    expect(e.kept()).toMatchObject({ base: 5000, rows: 1 })
    const counts: Array<number> = [e.stored().count]
    for (let i = 0; i < 100 && e.stored().min! <= 5000; i++) {
      e.apply(1)
      counts.push(e.stored().count)
    }
    expect(e.stored().min).toBe(5001)
    expect(counts.length).toBeGreaterThan(5)
    for (let i = 1; i < counts.length; i++) expect(counts[i - 1] + 1 - counts[i]).toBeLessThanOrEqual(512)
    expect(e.verify()).toSatisfy(Either.isRight)
    e.close()
  })

  it("does not prune past a row that breaks the chain, so the evidence stays and verify names it", () => {
    const d = driver({ events: 50, days: 0 })
    d.run(100, 20)
    const base = d.kept().base
    const bad = base + 10
    const db = new Database(d.file)
    db.prepare("UPDATE journal SET event = replace(event, '\"v\":1', '\"v\":1 ') WHERE seq = ?").run(bad)
    db.close()
    d.run(200, 20)
    expect(d.kept().base).toBeLessThan(bad)
    const result = d.verify()
    expect(Either.isLeft(result) && (result.left as { seq: number }).seq).toBe(bad)
    d.close()
  })
})
