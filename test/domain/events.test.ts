import { describe, expect, it } from "@effect/vitest"
import {
  encodeEventJson,
  encodeEventJsonBySchema,
  type Event,
  JobAccepted,
  JobDone,
  JobFailed,
  JobProgressed,
  JobStarted,
  LeaderElected,
  MembershipChanged
} from "../../src/domain/events.js"
import { Prng } from "../../src/domain/raft/prng.js"
import { decodeEvent } from "../../src/storage/Journal.js"

const values = (rng: Prng): unknown => {
  const pick = [
    undefined,
    null,
    0,
    -1.5,
    "",
    "ünïcødé \" \\ \n",
    true,
    [1, "a", null, { z: 1, a: 2 }],
    { task_type: "transfer_leader", target_leader: "127.0.0.1:1", nested: { b: [1, 2], a: undefined } },
    { n: Number.NaN, big: 1e300 }
  ]
  return pick[Math.floor(rng.float() * pick.length)]
}

/** Props in a shuffled key order: the encoding must not depend on how the event was built. */
const shuffled = (rng: Prng, props: Record<string, unknown>): any => {
  const keys = Object.keys(props).sort(() => rng.float() - 0.5)
  return Object.fromEntries(keys.map((k) => [k, props[k]]))
}

describe("encodeEventJson", () => {
  it("writes every job event exactly as the Schema encoding does, whatever its paras and memo and however it was built", () => {
    const rng = new Prng(7)
    for (let i = 0; i < 2000; i++) {
      const base = { v: 1 as const, jobId: String(1 + Math.floor(rng.float() * 1e6)), at: Math.floor(rng.float() * 2e12) }
      const events: Array<Event> = [
        new JobAccepted(shuffled(rng, { ...base, jobType: "raft_mission", userName: String(values(rng) ?? "u"), paras: values(rng) })),
        new JobStarted(shuffled(rng, { ...base, memo: values(rng) })),
        new JobProgressed(shuffled(rng, { ...base, memo: values(rng) })),
        new JobDone(shuffled(rng, { ...base, memo: values(rng) })),
        new JobFailed(shuffled(rng, { ...base, memo: values(rng), errorCode: "70007", errorInfo: String(values(rng)) }))
      ]
      for (const e of events) {
        expect(encodeEventJson(e)).toBe(encodeEventJsonBySchema(e))
        expect(decodeEvent(encodeEventJson(e))).toEqual(decodeEvent(encodeEventJsonBySchema(e)))
      }
    }
  })

  it("other events take the Schema path", () => {
    const events: Array<Event> = [
      new MembershipChanged({ v: 1, voters: ["a:1"], outgoing: [], learners: ["b:2"] }),
      new LeaderElected({ v: 1, leader: "a:1", http: "a:2", term: 3, at: 4 })
    ]
    for (const e of events) expect(encodeEventJson(e)).toBe(encodeEventJsonBySchema(e))
  })
})
