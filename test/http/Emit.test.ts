import { FetchHttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { NodeHttpAddress } from "../../src/actors/JobScheduler.js"
import { RaftNode, type RaftNodeApi } from "../../src/actors/RaftNode.js"
import type { RaftStatus } from "../../src/domain/raft/ready.js"
import { emptyState } from "../../src/domain/state.js"
import { makeEmit } from "../../src/http/Emit.js"

/** A leader whose state allocated jobs 1..99 and holds none of them (all ended long ago). */
const leaderThat = (copyingHistory: boolean) => {
  const status = { id: "n1", role: "leader", leader: "n1", voters: ["n1"], outgoing: [] } as unknown as RaftStatus
  const state = { ...emptyState, nextJobId: 100 }
  return Layer.succeed(RaftNode, {
    id: "n1",
    status: Effect.succeed(status),
    statusNow: () => status,
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
