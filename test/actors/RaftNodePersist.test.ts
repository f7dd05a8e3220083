import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect, Fiber, HashMap, Metric, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { metrics } from "../../src/actors/metrics.js"
import { loneWritesBeforeInline, placeWrite } from "../../src/actors/RaftNode.js"
import { makeInProcessGroup } from "../../src/inProcess.js"
import { pollLeader } from "../support/pollLeader.js"
import type { PersistMode } from "../../src/storage/RaftLog.js"

const members = ["p1:1", "p2:1", "p3:1"]

const waitLeader = pollLeader

const job = (at: number) => ({ _tag: "SubmitJob" as const, jobType: "x", userName: "u", paras: {}, at })
/** Done as it is accepted: no scheduler step proposes anything after it. */
const doneJob = (at: number) => ({ ...job(at), doneMemo: {} })
const jobIdOf = (a: { events: ReadonlyArray<unknown> }) => (a.events[0] as { jobId: string }).jobId

/** raft.db writes so far in this process, by the thread that ran them (every member counts). */
const writes = (thread: "main" | "writer") =>
  Effect.map(Metric.value(metrics.raftWrites.pipe(Metric.tagged("thread", thread))), (s) => s.count)

/**
 * Repeats `attempt` until `done` holds, at most `timeoutMs`: the writer thread opens raft.db in
 * its own time (from source, tsx compiles its module first), longer on a loaded machine.
 */
const until = <E>(attempt: Effect.Effect<unknown, E>, done: Effect.Effect<boolean>, timeoutMs = 15_000) =>
  Effect.gen(function* () {
    const end = Date.now() + timeoutMs
    for (;;) {
      yield* attempt
      if (yield* done) return
      if (Date.now() > end) throw new Error(`not done within ${timeoutMs} ms`)
      yield* Effect.sleep("100 millis")
    }
  })

describe.each(["sync", "worker"] as const)("RaftNode persisting raft.db (%s)", (persist: PersistMode) => {
  it.live("jobs commit, and a restarted group loads them", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cm-persist-"))
      const ids = yield* Effect.scoped(
        Effect.gen(function* () {
          const g = yield* makeInProcessGroup({ members, dataDir: dir, persist })
          const leader = yield* waitLeader(g.members)
          const submitted = yield* Effect.all(
            Array.from({ length: 40 }, (_, i) => leader.node.submit(job(i))),
            { concurrency: "unbounded" }
          )
          return submitted.map(jobIdOf)
        })
      )
      // Every member's files, reopened: the group resumes with every acknowledged job.
      yield* Effect.scoped(
        Effect.gen(function* () {
          const g = yield* makeInProcessGroup({ members, dataDir: dir, persist })
          const leader = yield* waitLeader(g.members)
          const state = yield* leader.node.read
          for (const id of ids) expect(Option.isSome(HashMap.get(state.jobs, id))).toBe(true)
        })
      )
    })
  )
})

describe("where a Ready's raft.db write runs", () => {
  it("a follower's inline; a leader's on the writer thread, unless its writes have been lone (one entry, no other proposal in flight) for a streak", () => {
    const full = loneWritesBeforeInline
    expect(placeWrite(false, 64, 0, 0)).toEqual({ inline: true, streak: full })
    // A leader with a full streak (as a new one starts) writes a lone write inline.
    expect(placeWrite(true, 1, 1, full)).toEqual({ inline: true, streak: full })
    expect(placeWrite(true, 1, 0, full)).toEqual({ inline: true, streak: full }) // its no-op
    expect(placeWrite(true, 0, 0, full)).toEqual({ inline: true, streak: full }) // hard state only
    // Concurrency empties the streak: the next lone writes go to the thread until it is full.
    expect(placeWrite(true, 1, 2, full)).toEqual({ inline: false, streak: 0 })
    expect(placeWrite(true, 2, 2, full)).toEqual({ inline: false, streak: 0 })
    let streak = 0
    for (let i = 1; i < full; i++) {
      const placed = placeWrite(true, 1, 1, streak)
      expect(placed).toEqual({ inline: false, streak: i })
      streak = placed.streak
    }
    expect(placeWrite(true, 1, 1, streak)).toEqual({ inline: true, streak: full })
    // A write without entries (hard state, a compaction) follows the streak and leaves it.
    expect(placeWrite(true, 0, 1, 3)).toEqual({ inline: false, streak: 3 })
    expect(placeWrite(true, 0, 5, full)).toEqual({ inline: true, streak: full })
  })

  it.live("a leader serving one proposal at a time never hands a write to its thread; concurrent proposals go to it, and lone writes come back inline after a streak", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cm-persist-"))
      const g = yield* makeInProcessGroup({ members, dataDir: dir, persist: "worker" })
      const leader = yield* waitLeader(g.members)
      yield* leader.node.submit(doneJob(0))
      const [main0, writer0] = [yield* writes("main"), yield* writes("writer")]
      for (let i = 1; i <= 10; i++) yield* leader.node.submit(doneJob(i))
      expect(yield* writes("writer")).toBe(writer0)
      // The leader's ten and the followers' (each member counts in this process's registry).
      expect((yield* writes("main")) - main0).toBeGreaterThanOrEqual(10)
      const burst = (from: number) =>
        Effect.all(Array.from({ length: 40 }, (_, i) => leader.node.submit(doneJob(from + i))), { concurrency: "unbounded" })
      // The first burst starts the thread (its writes run inline until the thread has opened
      // raft.db); a later one finds it open.
      let from = 100
      yield* until(
        Effect.suspend(() => burst((from += 40))).pipe(Effect.tap((done) => expect(done).toHaveLength(40))),
        Effect.map(writes("writer"), (n) => n > writer0)
      )
      const writer1 = yield* writes("writer")
      // One client again: at most a streak's worth of its writes still go to the thread.
      for (let i = 0; i < loneWritesBeforeInline; i++) yield* leader.node.submit(doneJob(200 + i))
      const writer2 = yield* writes("writer")
      expect(writer2 - writer1).toBeGreaterThanOrEqual(1)
      expect(writer2 - writer1).toBeLessThan(loneWritesBeforeInline)
      for (let i = 0; i < 5; i++) yield* leader.node.submit(doneJob(10_000 + i))
      expect(yield* writes("writer")).toBe(writer2)
    }).pipe(Effect.scoped),
    30_000
  )
})

describe("RaftNode with a raft.db writer thread", () => {
  it.live("a leader whose writes fail stops acknowledging; the others elect a leader and go on", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cm-persist-"))
      const g = yield* makeInProcessGroup({ members, dataDir: dir, persist: "worker" })
      const leader = yield* waitLeader(g.members)
      // Concurrent proposals start the thread (a lone write runs inline); once it has opened
      // raft.db, two proposals in one batch make a write that goes to it.
      const started = yield* writes("writer")
      let from = 100
      yield* until(
        Effect.suspend(() => Effect.all(Array.from({ length: 20 }, () => leader.node.submit(job(from++))), { concurrency: "unbounded" })),
        Effect.map(writes("writer"), (n) => n > started)
      )
      // Another connection holds raft.db's write lock: the leader's next transaction waits for
      // the busy timeout (5 s) and fails. Its event loop is not blocked meanwhile (the group
      // shares this process's), so the others notice the silent leader and elect another.
      const index = g.members.indexOf(leader)
      const lock = new Database(path.join(dir, String(index), "raft.db"))
      lock.exec("BEGIN IMMEDIATE")
      const writer0 = yield* writes("writer")
      const stuck = yield* Effect.fork(Effect.all([leader.node.submit(job(1)), leader.node.submit(job(4))], { concurrency: "unbounded" }))
      yield* until(Effect.void, Effect.map(writes("writer"), (n) => n > writer0), 3000)
      const rest = g.members.filter((m) => m !== leader)
      const next = yield* waitLeader(rest)
      const accepted = yield* next.node.submit(job(2))
      // Past the busy timeout: the old leader's write failed, and it acknowledged nothing.
      yield* Effect.sleep("5500 millis")
      lock.exec("ROLLBACK")
      lock.close()
      expect(stuck.unsafePoll()).toBeNull()
      yield* Fiber.interrupt(stuck)
      const later = yield* next.node.submit(job(3))
      yield* Effect.sleep("300 millis")
      const old = yield* leader.node.localState
      expect(Option.isSome(HashMap.get(old.jobs, jobIdOf(later)))).toBe(false)
      const state = yield* next.node.read
      expect(Option.isSome(HashMap.get(state.jobs, jobIdOf(accepted)))).toBe(true)
    }).pipe(Effect.scoped),
    30_000
  )
})
