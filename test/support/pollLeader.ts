import { Effect } from "effect"
import type { RaftNodeApi } from "../../src/actors/RaftNode.js"

/** Polls every 10 ms (up to 10 s) until one of `nodes` reports itself leader, and returns it. */
export const pollLeader = <M extends { node: RaftNodeApi }>(nodes: ReadonlyArray<M>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 1000; i++) {
      for (const m of nodes) if ((yield* m.node.status).role === "leader") return m
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.dieMessage("no leader")
  })
