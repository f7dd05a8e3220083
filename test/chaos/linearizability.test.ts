import { describe, expect, it } from "vitest"
import { Prng } from "../sim/prng.js"
import { checkDurable, checkFinalReads, checkIds, checkLeaders, leaderClaimsFromLog, resolve } from "./checks.js"
import type { RecordedOp } from "./history.js"
import type { JournalDump } from "./journal.js"
import { compareJournals } from "./journal.js"
import {
  check,
  checkPartition,
  Deadline,
  isRead,
  jobModel,
  type JobOp,
  narrowRegistry,
  type JobStatus,
  registryModel,
  shrink,
  statusCanReach
} from "./linearizability.js"

/**
 * The checker's own tests: histories known to be linearizable or not, for the per-job model and
 * the registry model, including the classic stale read after a partition; the search's timeout;
 * shrinking to the smallest window; and the id, leader and journal checkers.
 */

let nextId = 0
const submit = (id: string, call: number, ret: number | undefined, process = 0): JobOp => ({
  id: nextId++,
  process,
  call,
  ret: ret ?? Infinity,
  input: { f: "submit", id },
  output: ret === undefined ? undefined : { f: "submit" }
})
const found = (id: string, status: JobStatus, call: number, ret: number, process = 1): JobOp => ({
  id: nextId++,
  process,
  call,
  ret,
  input: { f: "read", id },
  output: { f: "read", found: true, status }
})
const missing = (id: string, call: number, ret: number, process = 1): JobOp => ({
  id: nextId++,
  process,
  call,
  ret,
  input: { f: "read", id },
  output: { f: "read", found: false }
})

const verdict = (ops: Array<JobOp>, model: typeof jobModel | typeof registryModel = jobModel) =>
  (check(model as typeof jobModel, ops, 5000)).outcome

describe("per-job model", () => {
  it("accepts a submit followed by reads that find it", () => {
    expect(verdict([submit("1", 0, 10), found("1", "not_started", 11, 12), found("1", "done", 13, 14)])).toBe("ok")
  })

  it("accepts a read concurrent with the submit either way", () => {
    expect(verdict([submit("1", 0, 10), missing("1", 5, 6)])).toBe("ok")
    expect(verdict([submit("1", 0, 10), found("1", "ongoing", 5, 6)])).toBe("ok")
  })

  it("refuses a job found before its submit was invoked", () => {
    expect(verdict([found("1", "done", 0, 1), submit("1", 2, 3)])).toBe("illegal")
  })

  it("refuses a read that misses an acknowledged job (lost write)", () => {
    expect(verdict([submit("1", 0, 10), missing("1", 20, 30)])).toBe("illegal")
  })

  it("accepts an unknown submit found later, and a miss before it is found", () => {
    expect(verdict([submit("1", 0, undefined), missing("1", 5, 6), found("1", "done", 50, 60), found("1", "done", 70, 80)])).toBe("ok")
  })

  it("refuses a miss after the job was seen (the read went back in time)", () => {
    expect(verdict([submit("1", 0, undefined), found("1", "not_started", 5, 6), missing("1", 10, 11)])).toBe("illegal")
  })

  it("statuses move forward only; done and failed are final", () => {
    expect(verdict([submit("1", 0, 1), found("1", "done", 2, 3), found("1", "ongoing", 4, 5)])).toBe("illegal")
    expect(verdict([submit("1", 0, 1), found("1", "done", 2, 3), found("1", "failed", 4, 5)])).toBe("illegal")
    // Concurrent reads may be ordered either way.
    expect(verdict([submit("1", 0, 1), found("1", "done", 2, 10), found("1", "ongoing", 3, 9)])).toBe("ok")
    expect(statusCanReach("not_started", "failed")).toBe(true)
    expect(statusCanReach("failed", "done")).toBe(false)
  })

  it("with journal retention a job may be found forgotten once it could have ended, never before it exists or back to unfinished", () => {
    const forgotten = (id: string, call: number, ret: number): JobOp => ({ ...found(id, "done", call, ret), output: { f: "read", found: true, status: "forgotten" } })
    expect(verdict([submit("1", 0, 1), found("1", "ongoing", 2, 3), forgotten("1", 4, 5), found("1", "failed", 6, 7), forgotten("1", 8, 9)])).toBe("ok")
    expect(verdict([submit("1", 0, 1), forgotten("1", 2, 3), found("1", "ongoing", 4, 5)])).toBe("illegal")
    expect(verdict([submit("1", 0, 1), found("1", "done", 2, 3), forgotten("1", 4, 5), found("1", "failed", 6, 7)])).toBe("illegal")
    expect(verdict([forgotten("1", 0, 1), submit("1", 2, 3)])).toBe("illegal")
    expect(verdict([submit("1", 0, 1), forgotten("1", 2, 3), missing("1", 4, 5)])).toBe("illegal")
  })

  it("the classic stale read after a partition: the old leader serves a read after the new one accepted the job", () => {
    // p0 submits job 3 through the new leader (majority side); it is acknowledged at t=40.
    // p1 then asks the old leader, cut off in the minority and still believing it leads, and is
    // told the job does not exist: a read that returned an older state than one already visible.
    const history = [
      submit("1", 0, 5, 0),
      submit("2", 6, 10, 0),
      found("1", "done", 11, 12, 1),
      submit("3", 20, 40, 0),
      missing("3", 45, 50, 1),
      found("3", "not_started", 55, 60, 2)
    ]
    const r = check(jobModel, history, 5000)
    expect(r.outcome).toBe("illegal")
    const bad = r.partitions.find((p) => p.outcome === "illegal")!
    expect(bad.key).toBe("3")
    // The smallest window: the acknowledged submit and the stale miss.
    const witness = shrink(jobModel, bad.ops, isRead)
    expect(witness.map((o) => o.input.f).sort()).toEqual(["read", "submit"])
    expect(witness.find((o) => o.input.f === "read")!.output).toEqual({ f: "read", found: false })
  })

  it("partitions by job id", () => {
    const r = check(jobModel, [submit("1", 0, 1), submit("2", 0, 1), found("2", "done", 2, 3)], 5000)
    expect(r.partitions.map((p) => p.key).sort()).toEqual(["1", "2"])
  })
})

describe("registry model (ids allocated in order)", () => {
  it("accepts submits in id order and reads consistent with a prefix", () => {
    expect(verdict([submit("1", 0, 5), submit("2", 6, 10), found("2", "done", 11, 12), found("1", "done", 13, 14), missing("3", 15, 16)], registryModel)).toBe("ok")
  })

  it("accepts concurrent submits whatever their ids", () => {
    expect(verdict([submit("2", 0, 10), submit("1", 1, 9)], registryModel)).toBe("ok")
  })

  it("refuses ids that go against real time", () => {
    expect(verdict([submit("2", 0, 5), submit("1", 6, 10)], registryModel)).toBe("illegal")
  })

  it("catches a stale read across jobs that the per-job model cannot see", () => {
    // Job 2's submit has an unknown outcome; job 3 was accepted and seen; then job 2 is not
    // found. Per job that is fine (2 may take effect later), but 2 precedes 3 in the log.
    const history = [submit("1", 0, 5), submit("2", 6, undefined), submit("3", 7, 12), found("3", "ongoing", 13, 14), missing("2", 15, 16)]
    expect(verdict(history, jobModel)).toBe("ok")
    expect(verdict(history, registryModel)).toBe("illegal")
    // The witness: job 3 acknowledged, so job 2 (before it in the log) exists; still not found.
    // Job 1 is folded into the initial state, the read of job 3 is not needed.
    const narrowed = narrowRegistry(shrink(registryModel, history, isRead))!
    expect(narrowed.ops.map((o) => `${o.input.f}(${o.input.id})`).sort()).toEqual(["read(2)", "submit(2)", "submit(3)"])
  })

  it("narrowing keeps a history illegal only when it is: a legal sub-range is not reported", () => {
    const history = [submit("1", 0, 5), submit("2", 6, 10), missing("1", 11, 12), found("2", "done", 13, 14)]
    expect(verdict(history, registryModel)).toBe("illegal")
    const narrowed = narrowRegistry(shrink(registryModel, history, isRead))!
    expect(narrowed.ops.map((o) => `${o.input.f}(${o.input.id})`).sort()).toEqual(["read(1)", "submit(1)"])
  })
})

describe("the search", () => {
  /** A random history of a correct registry: ops take effect at a random point inside their interval. */
  const randomHistory = (seed: number, n: number, processes: number): Array<JobOp> => {
    const rng = new Prng(seed)
    const ops: Array<JobOp> = []
    const free = Array.from({ length: processes }, () => 0)
    let t = 0
    let allocated = 0
    const status = new Map<number, JobStatus>()
    // Each step: one process starts an op; the effect happens at `t`, the interval surrounds it.
    for (let i = 0; i < n; i++) {
      t += rng.range(1, 5)
      const p = rng.int(processes)
      const call = Math.max(free[p], t - rng.range(0, 20))
      if (call > t) t = call
      const ret = t + rng.range(0, 20)
      free[p] = ret + 1
      if (rng.chance(0.4)) {
        allocated++
        status.set(allocated, "not_started")
        ops.push({ id: i, process: p, call, ret, input: { f: "submit", id: String(allocated) }, output: { f: "submit" } })
      } else {
        const id = rng.range(1, allocated + 2)
        const s = status.get(id)
        if (s !== undefined && s !== "done" && rng.chance(0.5)) status.set(id, s === "not_started" ? "ongoing" : "done")
        const now = status.get(id)
        ops.push({ id: i, process: p, call, ret, input: { f: "read", id: String(id) }, output: now === undefined ? { f: "read", found: false } : { f: "read", found: true, status: now } })
      }
    }
    return ops
  }

  it("accepts large correct histories quickly, per job and as a registry", () => {
    for (const seed of [1, 2, 3]) {
      const ops = randomHistory(seed, 5000, 8)
      const started = Date.now()
      expect(check(jobModel, ops, 20_000).outcome).toBe("ok")
      expect(check(registryModel, ops, 20_000).outcome).toBe("ok")
      expect(Date.now() - started).toBeLessThan(15_000)
    }
  })

  it("finds a stale read planted in a large history and shrinks it to a small window", () => {
    const ops = randomHistory(7, 2000, 8)
    const acked = ops.filter((o) => o.input.f === "submit")
    const victim = acked[Math.floor(acked.length / 2)]
    const end = Math.max(...ops.map((o) => o.ret))
    ops.push({ id: 99_999, process: 99, call: end + 10, ret: end + 20, input: { f: "read", id: victim.input.id }, output: { f: "read", found: false } })
    const r = check(jobModel, ops, 20_000)
    expect(r.outcome).toBe("illegal")
    const bad = r.partitions.find((p) => p.outcome === "illegal")!
    const witness = shrink(jobModel, bad.ops, isRead)
    expect(witness.length).toBeLessThanOrEqual(3)
    expect(witness.some((o) => o.id === 99_999)).toBe(true)
    expect(check(registryModel, ops, 20_000).outcome).toBe("illegal")
  })

  it("answers unknown when the deadline passes", () => {
    const ops = randomHistory(5, 3000, 8)
    expect(checkPartition(registryModel, ops, new Deadline(Date.now() - 1)).outcome).toBe("unknown")
  })

  it("reports the longest linearizable prefix and the operations stuck after it", () => {
    const ops = [submit("1", 0, 10), found("1", "done", 11, 12), missing("1", 13, 14)]
    const r = checkPartition(jobModel, ops, Deadline.in(5000))
    expect(r.outcome).toBe("illegal")
    expect(r.longestPrefix.length).toBe(2)
    expect(r.stuck.map((o) => o.id)).toEqual([ops[2].id])
  })
})

// ------------------------------------------------------------------------------ other checkers

const rec = (over: Partial<RecordedOp> & Pick<RecordedOp, "id" | "kind" | "call">): RecordedOp => ({
  process: 0,
  actor: "client",
  node: "n1",
  ret: over.call + 1,
  input: over.kind === "submit" ? { userName: `u${over.id}`, task: "transfer_leader", paras: {} } : { jobId: "1" },
  outcome: "ok",
  detail: "",
  ...over
})

const dump = (node: string, jobs: Array<[string, string]>, extra: Partial<JournalDump> = {}): JournalDump => ({
  node,
  dir: "/nowhere",
  rows: jobs.map(([id, user], i) => ({ seq: i + 1, logIndex: i + 2, logTerm: 1, jobId: id, userName: user, type: "JobAccepted", prevHash: i === 0 ? "g" : `h${i}`, hash: `h${i + 1}` })),
  appliedIndex: jobs.length + 1,
  baseSeq: 0,
  baseHash: "g",
  baseJobs: [],
  historyJobs: [],
  ...extra
})

describe("ids, durability, phantoms", () => {
  it("flags an id that goes backwards in real time, and a duplicate id", () => {
    const h = [rec({ id: 0, kind: "submit", call: 0, ret: 5, jobId: "2" }), rec({ id: 1, kind: "submit", call: 6, ret: 9, jobId: "1" })]
    expect(checkIds(h).map((f) => f.checker)).toEqual(["order"])
    const d = [rec({ id: 0, kind: "submit", call: 0, ret: 5, jobId: "1" }), rec({ id: 1, kind: "submit", call: 1, ret: 9, jobId: "1" })]
    expect(checkIds(d).some((f) => f.checker === "unique")).toBe(true)
  })

  it("resolves unknown submits from the journal, flags lost, phantom and definitely-failed-but-applied jobs", () => {
    const history = [
      rec({ id: 0, kind: "submit", call: 0, ret: 5, jobId: "1" }),
      rec({ id: 1, kind: "submit", call: 6, ret: Infinity, outcome: "info" }),
      rec({ id: 2, kind: "submit", call: 7, ret: 8, outcome: "fail", errorCode: "70006" }),
      rec({ id: 3, kind: "submit", call: 9, ret: 10, jobId: "9" })
    ]
    const journal = dump("n1", [["1", "u0"], ["2", "u1"], ["3", "u2"], ["4", "stranger"]])
    const r = resolve(history, [journal])
    expect(history[1].jobId).toBe("2")
    const checkers = r.findings.map((f) => f.checker).sort()
    expect(checkers).toEqual(["lost", "phantom", "phantom"])
    expect(r.jobOps.filter((o) => o.input.f === "submit").map((o) => o.input.id).sort()).toEqual(["1", "2", "3", "4"])
  })
})

describe("ids, durability, phantoms under journal retention", () => {
  it("ids below the lowest any journal knows are pruned, not lost; those above still are; a node's own prunes likewise", () => {
    const history = [
      rec({ id: 0, kind: "submit", call: 0, ret: 5, jobId: "1" }),
      rec({ id: 1, kind: "submit", call: 6, ret: Infinity, outcome: "info" }), // took effect as 2, pruned since
      rec({ id: 2, kind: "submit", call: 9, ret: 10, jobId: "3" }),
      rec({ id: 3, kind: "submit", call: 11, ret: 12, jobId: "5" }),
      rec({ id: 4, kind: "read", call: 13, ret: 14, input: { jobId: "1" }, found: false, forgotten: true })
    ]
    const journal = dump("n1", [["3", "u2"], ["4", "stranger"]])
    const strict = resolve(history, [journal])
    expect(strict.findings.map((f) => f.checker).sort()).toEqual(["lost", "lost", "phantom"])
    const r = resolve(history, [journal], true)
    expect(r.findings.map((f) => `${f.checker} ${f.message}`)).toEqual([
      "lost acknowledged job 5 is in no journal: lost",
      'phantom job 4 (user_name "stranger") was created by no recorded submit'
    ])
    expect(r.jobOps.filter((o) => o.input.f === "submit").map((o) => o.input.id).sort()).toEqual(["1", "2", "3", "4"])
    expect(r.jobOps.find((o) => o.input.f === "read")?.output).toEqual({ f: "read", found: true, status: "forgotten" })
    expect(checkDurable(history, [journal], true).map((f) => f.message)).toEqual(["n1: 1 acknowledged job(s) missing from its journal: 5"])
    const final = [history[0], history[2], rec({ id: 5, kind: "read", actor: "final", call: 20, input: { jobId: "1" }, found: false, forgotten: true })]
    expect(checkFinalReads(final)).toHaveLength(1)
    expect(checkFinalReads(final, true)).toHaveLength(0)
  })
})

describe("leaders and journals", () => {
  it("reads leader claims from logfmt lines and flags two leaders in one term", () => {
    const log = [
      'timestamp=2026-01-01T00:00:00.000Z level=INFO fiber=#19 message="role leader, term 3, leader 127.0.0.1:1" node=127.0.0.1:1',
      'timestamp=2026-01-01T00:00:00.000Z level=INFO fiber=#19 message="role follower, term 4, leader none" node=127.0.0.1:1'
    ].join("\n")
    const claims = leaderClaimsFromLog(log, "x")
    expect(claims).toEqual([{ term: 3, node: "127.0.0.1:1", source: expect.any(String) }])
    expect(checkLeaders([...claims, { term: 3, node: "127.0.0.1:2", source: "status" }]).findings).toHaveLength(1)
    expect(checkLeaders([...claims, { term: 4, node: "127.0.0.1:2", source: "status" }]).findings).toHaveLength(0)
  })

  it("compares journals up to the common applied index", () => {
    const a = dump("n1", [["1", "u0"], ["2", "u1"]])
    const b = dump("n2", [["1", "u0"], ["2", "u1"]])
    expect(compareJournals([a, b])).toEqual([])
    const c = dump("n3", [["1", "u0"], ["2", "uX"]])
    const forked = { ...c, rows: c.rows.map((r) => (r.seq === 2 ? { ...r, hash: "other" } : r)) }
    expect(compareJournals([a, forked]).some((p) => p.includes("differ from seq 2"))).toBe(true)
    // Beyond the common applied index a lagging node may differ (not applied yet).
    expect(compareJournals([a, { ...forked, appliedIndex: 2 }])).toEqual([])
    const broken = { ...a, rows: a.rows.map((r) => (r.seq === 2 ? { ...r, prevHash: "zz" } : r)) }
    expect(compareJournals([broken]).some((p) => p.includes("prev_hash"))).toBe(true)
  })
})
