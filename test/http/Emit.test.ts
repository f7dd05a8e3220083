import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option } from "effect"
import { NodeHttpAddress } from "../../src/actors/JobScheduler.js"
import { NotLeader, RaftNode, type RaftNodeApi } from "../../src/actors/RaftNode.js"
import type { AppliedEntry } from "../../src/actors/StateMachine.js"
import type { StateCommand } from "../../src/domain/jobs.js"
import type { RaftStatus } from "../../src/domain/raft/ready.js"
import { emptyState } from "../../src/domain/state.js"
import { makeEmit } from "../../src/http/Emit.js"
import { accepted } from "../support/jobEvents.js"

/** A leader whose state allocated jobs 1..99 and holds none of them (all ended long ago). */
const leaderThat = (copyingHistory: boolean) => {
  const status = { id: "n1", role: "leader", leader: "n1", voters: ["n1"], outgoing: [] } as unknown as RaftStatus
  const state = { ...emptyState, nextJobId: 100 }
  return Layer.succeed(RaftNode, {
    id: "n1",
    status: Effect.succeed(status),
    membershipNow: () => status,
    read: Effect.succeed(state),
    localState: Effect.succeed(state),
    stateNow: () => state,
    job: () => Effect.succeed(Option.none()),
    historyIncomplete: Effect.succeed(copyingHistory)
  } as unknown as RaftNodeApi)
}

const getStatus = (jobId: string) =>
  JSON.stringify({ version: "1.0", job_id: jobId, job_type: "get_status", timestamp: "1", user_name: "t", paras: {} })

const ask = (copyingHistory: boolean, jobId: string) =>
  Effect.gen(function* () {
    const emit = yield* makeEmit
    return (yield* emit.handle(getStatus(jobId), false)) as unknown as { status: string; error_code: string; error_info: string }
  }).pipe(Effect.provide(Layer.mergeAll(leaderThat(copyingHistory), Layer.succeed(NodeHttpAddress, "h:1"), FetchHttpClient.layer)))

describe("get_status of a job the leader does not hold", () => {
  it.effect("while the leader still copies the events before its snapshot: 70002, retry", () =>
    Effect.gen(function* () {
      const reply = yield* ask(true, "7")
      expect(reply).toMatchObject({ status: "failed", error_code: "70002" })
      expect(reply.error_info).toMatch(/still copying/)
    }))

  it.effect("once nothing is left to copy (retention dropped it): 70003, saying why", () =>
    Effect.gen(function* () {
      const reply = yield* ask(false, "7")
      expect(reply).toMatchObject({ status: "failed", error_code: "70003" })
      expect(reply.error_info).toMatch(/ended long ago/)
    }))

  it.effect("a job id never allocated is 70003 either way", () =>
    Effect.gen(function* () {
      const reply = yield* ask(true, "100")
      expect(reply).toMatchObject({ status: "failed", error_code: "70003" })
      expect(reply.error_info).toMatch(/no job with job_id 100/)
    }))
})

const a = "127.0.0.1:7001"
const b = "127.0.0.1:7002"

/**
 * A leader (a) of members a and b whose proposals end as `outcome` says, recording what was submitted:
 * the hot path (Emit.serve, no fiber) and the Effect path (Emit.handle, the router's) alike.
 */
const submittingLeader = (outcome: "applied" | "lost") => {
  const submitted: Array<StateCommand> = []
  const status = { id: a, role: "leader", leader: a, voters: [a, b], outgoing: [] } as unknown as RaftStatus
  const node = {
    id: a,
    status: Effect.succeed(status),
    membershipNow: () => status,
    localState: Effect.succeed(emptyState),
    stateNow: () => emptyState,
    submitNow: (command: StateCommand, onDone: (exit: Exit.Exit<AppliedEntry, never>) => void) => {
      submitted.push(command)
      const id = submitted.length
      setTimeout(() =>
        onDone(
          outcome === "applied"
            ? Exit.succeed({ index: 10 + id, term: 2, events: [accepted(40 + id)] })
            : (Exit.fail(new NotLeader({ leader: null })) as never)
        ), 1)
    },
    submit: (command: StateCommand) =>
      Effect.async<AppliedEntry, NotLeader>((resume) => node.submitNow(command, (exit) => resume(exit)))
  }
  const layer = Layer.mergeAll(Layer.succeed(RaftNode, node as unknown as RaftNodeApi), Layer.succeed(NodeHttpAddress, "h:1"), FetchHttpClient.layer)
  return { submitted, layer }
}

const transferTo = (target: string) =>
  JSON.stringify({ version: "1.0", job_id: "", job_type: "raft_mission", timestamp: "1", user_name: "ops", paras: { task_type: "transfer_leader", target_leader: target } })

type Reply = { status: string; error_code: string; error_info: string; job_id?: string }

const both = (outcome: "applied" | "lost", body: string) => {
  const leader = submittingLeader(outcome)
  return Effect.gen(function* () {
    const emit = yield* makeEmit
    const viaEffect = (yield* emit.handle(body, false)) as unknown as Reply
    const viaCallback = yield* Effect.async<Reply>((resume) => emit.serve(body, false, (r) => resume(Effect.succeed(r as unknown as Reply))))
    return { viaEffect, viaCallback, submitted: leader.submitted }
  }).pipe(Effect.provide(leader.layer))
}

describe("a job the leader accepts (Emit.serve without a fiber, Emit.handle as an Effect)", () => {
  it.live("is submitted once validated, and answered accept with the id its apply allocated", () =>
    Effect.gen(function* () {
      const { submitted, viaCallback, viaEffect } = yield* both("applied", transferTo(b))
      expect(viaEffect).toMatchObject({ status: "accept", error_code: "0", job_id: "41" })
      expect(viaCallback).toMatchObject({ status: "accept", error_code: "0", job_id: "42" })
      expect(submitted).toHaveLength(2)
      expect(submitted[0]).toMatchObject({ _tag: "SubmitJob", jobType: "raft_mission", userName: "ops", paras: { task_type: "transfer_leader", target_leader: b } })
      // A transfer to another member is a job to run, not done at acceptance.
      expect("doneMemo" in submitted[0]).toBe(false)
    }))

  it.live("a transfer to the leader itself is done at acceptance: its memo rides on the submission", () =>
    Effect.gen(function* () {
      const { submitted } = yield* both("applied", transferTo(a))
      expect(submitted[0]).toMatchObject({ doneMemo: { task_type: "transfer_leader", target_leader: a, leader: a, voters: [a, b] } })
    }))

  it.live("a proposal lost with the leadership answers 70002, retry", () =>
    Effect.gen(function* () {
      const { viaCallback, viaEffect } = yield* both("lost", transferTo(b))
      for (const reply of [viaEffect, viaCallback]) {
        expect(reply).toMatchObject({ status: "failed", error_code: "70002" })
        expect(reply.error_info).toMatch(/leadership changed/)
      }
    }))

  it.live("a job the membership refuses is answered 70001 and never submitted", () =>
    Effect.gen(function* () {
      const { submitted, viaCallback, viaEffect } = yield* both("applied", transferTo("127.0.0.1:7009"))
      for (const reply of [viaEffect, viaCallback]) {
        expect(reply).toMatchObject({ status: "failed", error_code: "70001" })
        expect(reply.error_info).toMatch(/127.0.0.1:7009 is not a voter/)
      }
      expect(submitted).toHaveLength(0)
    }))
})
