import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Effect, Fiber, HashMap, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { makeInProcessGroup } from "../../src/inProcess.js"
import { pollLeader } from "../support/pollLeader.js"
import type { PersistMode } from "../../src/storage/RaftLog.js"

const members = ["p1:1", "p2:1", "p3:1"]

const waitLeader = pollLeader

const job = (at: number) => ({ _tag: "SubmitJob" as const, jobType: "x", userName: "u", paras: {}, at })
const jobIdOf = (a: { events: ReadonlyArray<unknown> }) => (a.events[0] as { jobId: string }).jobId

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

describe("RaftNode with a raft.db writer thread", () => {
  it.live("a leader whose writes fail stops acknowledging; the others elect a leader and go on", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cm-persist-"))
      const g = yield* makeInProcessGroup({ members, dataDir: dir, persist: "worker" })
      const leader = yield* waitLeader(g.members)
      // Another connection holds raft.db's write lock: the leader's next transaction waits for
      // the busy timeout (5 s) and fails. Its event loop is not blocked meanwhile (the group
      // shares this process's), so the others notice the silent leader and elect another.
      const index = g.members.indexOf(leader)
      const lock = new Database(path.join(dir, String(index), "raft.db"))
      lock.exec("BEGIN IMMEDIATE")
      const stuck = yield* Effect.fork(leader.node.submit(job(1)))
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
