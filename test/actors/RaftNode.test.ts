import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, HashMap, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { RaftError } from "../../src/actors/RaftNode.js"
import type { AppliedEntry } from "../../src/actors/StateMachine.js"
import { makeInProcessGroup } from "../../src/inProcess.js"
import { pollLeader } from "../support/pollLeader.js"

const members = ["n1:1", "n2:1", "n3:1"]

const waitLeader = pollLeader

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "cm-node-"))

describe("RaftNode actor (in-process group, real SQLite files)", () => {
  it.live("a submitted job is committed, gets an id, and every member applies it", () =>
    Effect.gen(function* () {
      const g = yield* makeInProcessGroup({ members, dataDir: tmp() })
      const leader = yield* waitLeader(g.members)
      const applied = yield* leader.node.submit({ _tag: "SubmitJob", jobType: "raft_mission", userName: "u", paras: { task_type: "transfer_leader", target_leader: leader.id }, at: 1 })
      const accepted = applied.events.find((e) => e._tag === "JobAccepted")
      expect(accepted).toBeDefined()
      const jobId = (accepted as { jobId: string }).jobId
      // The scheduler runs the job: a transfer to the leader itself is done at once.
      for (let i = 0; i < 200; i++) {
        const s = yield* leader.node.read
        const job = HashMap.get(s.jobs, jobId)
        if (Option.isSome(job) && job.value.status === "done") break
        yield* Effect.sleep("10 millis")
      }
      const state = yield* leader.node.read
      expect(Option.getOrThrow(HashMap.get(state.jobs, jobId)).status).toBe("done")
      yield* Effect.sleep("100 millis")
      for (const m of g.members) {
        const s = yield* m.node.localState
        expect(Option.isSome(HashMap.get(s.jobs, jobId))).toBe(true)
      }
    }).pipe(Effect.scoped)
  )

  it.live("submitNow calls back once applied, with no fiber waiting; a callback that throws does not stop the actor", () =>
    Effect.gen(function* () {
      const g = yield* makeInProcessGroup({ members, dataDir: tmp() })
      const leader = yield* waitLeader(g.members)
      const job = (n: number) => ({ _tag: "SubmitJob" as const, jobType: "raft_mission", userName: "u", paras: { n }, at: n })
      const submitNow = (n: number, also: () => void = () => {}) =>
        Effect.async<Exit.Exit<AppliedEntry, RaftError>>((resume) =>
          leader.node.submitNow(job(n), (exit) => {
            resume(Effect.succeed(exit))
            also()
          }))
      const first = yield* submitNow(1, () => {
        throw new Error("a caller's bug")
      })
      const second = yield* submitNow(2)
      const ids = [first, second].map((exit) => {
        expect(Exit.isSuccess(exit)).toBe(true)
        const events = Exit.isSuccess(exit) ? exit.value.events : []
        return (events.find((e) => e._tag === "JobAccepted") as { jobId: string } | undefined)?.jobId
      })
      expect(ids.every((id) => id !== undefined)).toBe(true)
      expect(Number(ids[1])).toBeGreaterThan(Number(ids[0]))
      // The actor kept going: a fiber's submit after the throwing callback commits too.
      const third = yield* leader.node.submit(job(3))
      expect(third.events.some((e) => e._tag === "JobAccepted")).toBe(true)
    }).pipe(Effect.scoped),
    20_000
  )

  it.live("more inputs at once than one batch takes (4096): every proposal is applied, in the order offered", () =>
    Effect.gen(function* () {
      // The members share one event loop, and a batch of 4096 blocks it: a 2 s election timeout
      // keeps the followers from deposing the leader meanwhile on a loaded machine.
      const g = yield* makeInProcessGroup({ members, dataDir: tmp(), raft: { electionTicks: 200 } })
      const leader = yield* waitLeader(g.members)
      const count = 5000
      const indexes = yield* Effect.async<Array<number>, string>((resume) => {
        const got: Array<number> = []
        let settled = 0
        // One synchronous loop: all of them wait in the inbox before the actor takes any.
        for (let n = 0; n < count; n++) {
          leader.node.submitNow({ _tag: "SubmitJob", jobType: "raft_mission", userName: "u", paras: { n }, at: n }, (exit) => {
            if (Exit.isSuccess(exit)) got[n] = exit.value.index
            if (++settled < count) return
            const failed = count - got.filter((i) => i > 0).length
            resume(failed === 0 ? Effect.succeed(got) : Effect.fail(`${failed} proposals failed`))
          })
        }
      })
      expect(indexes.every((index, n) => n === 0 || index === indexes[n - 1] + 1)).toBe(true)
    }).pipe(Effect.scoped),
    30_000
  )

  it.live("a proposal and a read that cannot complete (no quorum, CheckQuorum off) fail with TimedOut after operationTimeoutMs", () =>
    Effect.gen(function* () {
      const g = yield* makeInProcessGroup({ members, dataDir: tmp(), raft: { checkQuorum: false }, operationTimeoutMs: 300 })
      const leader = yield* waitLeader(g.members)
      for (const m of g.members) if (m.id !== leader.id) yield* m.stop
      const submitted = yield* Effect.either(leader.node.submit({ _tag: "SubmitJob", jobType: "x", userName: "u", paras: {}, at: 1 }))
      const read = yield* Effect.either(leader.node.read)
      expect(submitted._tag === "Left" && submitted.left._tag).toBe("TimedOut")
      expect(read._tag === "Left" && read.left._tag).toBe("TimedOut")
      // Still the leader (nothing deposed it): the timeout, not a step-down, ended both.
      expect((yield* leader.node.status).role).toBe("leader")
    }).pipe(Effect.scoped),
    20_000
  )

  it.live("after the leader stops, a new leader is elected and earlier jobs survive", () =>
    Effect.gen(function* () {
      const g = yield* makeInProcessGroup({ members, dataDir: tmp() })
      const leader = yield* waitLeader(g.members)
      const ids: Array<string> = []
      for (let i = 0; i < 5; i++) {
        const a = yield* leader.node.submit({ _tag: "SubmitJob", jobType: "x", userName: "u", paras: {}, at: i })
        ids.push((a.events[0] as { jobId: string }).jobId)
      }
      yield* leader.stop
      const rest = g.members.filter((m) => m.id !== leader.id)
      const next = yield* waitLeader(rest)
      expect(next.id).not.toBe(leader.id)
      const state = yield* next.node.read
      for (const id of ids) expect(Option.isSome(HashMap.get(state.jobs, id))).toBe(true)
      const later = yield* next.node.submit({ _tag: "SubmitJob", jobType: "x", userName: "u", paras: {}, at: 9 })
      expect(Number((later.events[0] as { jobId: string }).jobId)).toBeGreaterThan(Number(ids[ids.length - 1]))
    }).pipe(Effect.scoped)
  )

  it.live("a restarted member resumes from its files with the same jobs", () =>
    Effect.gen(function* () {
      const dir = tmp()
      const g = yield* makeInProcessGroup({ members, dataDir: dir })
      const leader = yield* waitLeader(g.members)
      const a = yield* leader.node.submit({ _tag: "SubmitJob", jobType: "x", userName: "u", paras: {}, at: 1 })
      const id = (a.events[0] as { jobId: string }).jobId
      yield* Effect.sleep("100 millis")
      const i = g.members.findIndex((m) => m.id !== leader.id)
      yield* g.members[i].stop
      const again = yield* g.restart(i)
      const s = yield* again.node.localState
      expect(Option.isSome(HashMap.get(s.jobs, id))).toBe(true)
    }).pipe(Effect.scoped)
  )
})
