import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, HashMap, Option } from "effect"
import * as path from "node:path"
import * as Audit from "../../src/audit/Audit.js"
import type { VerifyReport } from "../../src/audit/verify.js"
import { decodeEvent, type JournalRow, rowHash } from "../../src/storage/Journal.js"
import { fold, toJson } from "../../src/domain/state.js"
import { auditCli, divergenceOf, verifyDir, journalRows, removeTmpDirs, runWorkload, tampered, tmpDir, type Workload } from "./workload.js"


const cli = auditCli

const verify = verifyDir

let workload: Workload
const runningReports: Array<VerifyReport> = []

beforeAll(async () => {
  workload = await Effect.runPromise(
    runWorkload(42, (dirs) =>
      Effect.forEach(dirs, (dir) => Effect.map(Audit.verifyDataDir(dir), (r) => runningReports.push(r)), { discard: true }).pipe(Effect.orDie)
    )
  )
}, 120_000)

afterAll(removeTmpDirs)

/** A member that journaled every event from the first (not the one that rejoined by snapshot). */
const whole = () => workload.dirs[(workload.rejoined + 1) % workload.dirs.length]

/** A row a third into that member's journal, well below the seq of its latest Raft snapshot. */
const middle = () => {
  const { rows } = journalRows(whole())
  return rows[Math.floor(rows.length / 3)].seq
}

describe("audit verify on the members of a random workload", () => {
  it("passes on every member's data dir beside the running group, and compares with a Raft snapshot", () => {
    expect(runningReports).toHaveLength(3)
    for (const report of runningReports) {
      expect(report.events).toBeGreaterThan(report.baseSeq === 0 ? 100 : 10)
      expect(report.checkpoint).not.toBeNull()
    }
  })

  it("passes on every member's data dir once the group stopped", async () => {
    for (const dir of workload.dirs) {
      const result = await verify(dir)
      expect(Either.isRight(result), JSON.stringify(result)).toBe(true)
    }
  })

  it("all members' journals agree event by event (same seq, hash and event), each from its base on", () => {
    const journals = workload.dirs.map(journalRows)
    const full = journals.find((j) => j.base === 0)!
    expect(full.rows.length).toBeGreaterThan(100)
    const key = (rows: ReadonlyArray<JournalRow>) => rows.map((r) => [r.seq, r.hash, r.event])
    for (const j of journals) expect(key(j.rows)).toEqual(key(full.rows.filter((r) => r.seq > j.base)))
  })

  it("keeps every event by default (no journal retention): nothing is pruned, the report says so", async () => {
    const full = journalRows(whole())
    expect(full.base).toBe(0)
    expect(full.rows[0].seq).toBe(1)
    expect(full.rows.length).toBe(full.rows[full.rows.length - 1].seq)
    for (const report of runningReports) expect(report.pruned).toBeNull()
  })

  it("a member that rejoined by snapshot holds the journal from the snapshot's point on, continuing the same chain", async () => {
    const rejoined = journalRows(workload.dirs[workload.rejoined])
    expect(rejoined.base).toBeGreaterThan(0)
    const result = await verify(workload.dirs[workload.rejoined])
    expect(Either.getOrThrow(result).baseSeq).toBe(rejoined.base)
    const other = journalRows(whole())
    expect(rejoined.rows[0].prevHash).toBe(other.rows.find((r) => r.seq === rejoined.base)?.hash)
  })

  it("the CLI exits 0 with a summary line on an intact data dir", async () => {
    const r = await cli("--data", whole(), "verify")
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^verify: ok: \d+ events, seq 1\.\.\d+, hash chain intact .*Raft snapshot at index \d+/)
  })
})

describe("audit verify reports tampering at its sequence number", () => {
  it("an edited event: at its seq, exit code 1 through the CLI", async () => {
    const seq = middle()
    const copy = tampered(whole(), (db) =>
      db.prepare<[number]>("UPDATE journal SET event = replace(event, '\"v\":1', '\"v\":1 ') WHERE seq = ?").run(seq)
    )
    const d = await divergenceOf(copy)
    expect(d.seq).toBe(seq)
    expect(d.what).toMatch(/content was edited/)
    const r = await cli("--data", copy, "verify")
    expect(r.code).toBe(1)
    expect(r.stdout.trim()).toBe(`verify: FAILED at seq ${seq}: ${d.what}`)
  })

  it("a deleted event: at its seq", async () => {
    const seq = middle()
    const copy = tampered(whole(), (db) => db.prepare<[number]>("DELETE FROM journal WHERE seq = ?").run(seq))
    const d = await divergenceOf(copy)
    expect(d.seq).toBe(seq)
    expect(d.what).toMatch(/missing/)
  })

  it("two events whose seq were swapped: at the first of them", async () => {
    const a = middle()
    const b = a + 3
    const copy = tampered(whole(), (db) => {
      const renumber = db.prepare<[number, number]>("UPDATE journal SET seq = ? WHERE seq = ?")
      renumber.run(-1, a)
      renumber.run(a, b)
      renumber.run(b, -1)
    })
    const d = await divergenceOf(copy)
    expect(d.seq).toBe(a)
    expect(d.what).toMatch(/prev_hash does not link/)
  })

  it("an edit whose hash chain was recomputed to the end is still caught by the Raft snapshot's journal head", async () => {
    const seq = middle()
    const copy = tampered(whole(), (db) => {
      const rows = db.prepare<[number], { seq: number; logIndex: number; logTerm: number; at: number; jobId: string | null; userName: string | null; type: string; event: string; prevHash: string }>(
        "SELECT seq, log_index AS logIndex, log_term AS logTerm, at, job_id AS jobId, user_name AS userName, type, event, prev_hash AS prevHash FROM journal WHERE seq >= ? ORDER BY seq"
      ).all(seq)
      const update = db.prepare<[string, string, string, number]>("UPDATE journal SET event = ?, prev_hash = ?, hash = ? WHERE seq = ?")
      let prev = rows[0].prevHash
      for (const row of rows) {
        const event = row.seq === seq ? row.event.replace('"v":1', '"v":1 ') : row.event
        const hash = rowHash(prev, { ...row, event })
        update.run(event, prev, hash, row.seq)
        prev = hash
      }
    })
    const d = await divergenceOf(copy)
    expect(d.seq).toBeGreaterThanOrEqual(seq)
    expect(d.what).toMatch(/differs from the Raft snapshot/)
  })
})

describe("audit replay", () => {
  it("state --at SEQ is the fold of the events through SEQ", async () => {
    const dir = whole()
    const { rows } = journalRows(dir)
    const seq = middle()
    const state = await Effect.runPromise(Audit.stateAt(dir, seq))
    const expected = fold(rows.filter((r) => r.seq <= seq).map((r) => decodeEvent(r.event)))
    expect(toJson(state)).toEqual(toJson(expected))
  })

  it("job ID is the job's events in order and its final state, as in the state", async () => {
    const dir = whole()
    const final = await Effect.runPromise(Audit.stateAt(dir))
    expect(HashMap.size(final.jobs)).toBe(workload.jobs)
    const id = "3"
    const history = await Effect.runPromise(Audit.jobHistory(dir, id))
    expect(history.rows[0].type).toBe("JobAccepted")
    expect(history.rows.every((r) => r.jobId === id)).toBe(true)
    expect(history.rows.map((r) => r.seq)).toEqual([...history.rows.map((r) => r.seq)].sort((x, y) => x - y))
    expect(history.job).toEqual(Option.getOrThrow(HashMap.get(final.jobs, id)))
  })

  it("events --json prints one object per line, filtered", async () => {
    const r = await cli("--data", whole(), "events", "--type", "JobAccepted", "--limit", "5", "--json")
    expect(r.code).toBe(0)
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l))
    expect(lines).toHaveLength(5)
    for (const line of lines) {
      expect(Object.keys(line)).toEqual(["seq", "log_index", "log_term", "at", "job_id", "user_name", "type", "event", "hash"])
      expect(line.type).toBe("JobAccepted")
      expect(line.event._tag).toBe("JobAccepted")
    }
  })

  it("a missing data dir is one line on stderr and exit code 2", async () => {
    const r = await cli("--data", path.join(tmpDir("cm-empty-"), "nope"), "verify")
    expect(r.code).toBe(2)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(/cannot read the data directory \(no such file or directory\)/)
  })
})
