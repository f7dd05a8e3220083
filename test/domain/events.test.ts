import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import {
  decodeEventJson,
  decodeEventJsonBySchema,
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
import { jsonValues, objectText } from "../support/decoding.js"

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

describe("decodeEventJson: the plain path gives what the schema gives", () => {
  const tags = ["JobAccepted", "JobStarted", "JobProgressed", "JobDone", "JobFailed", "LeaderElected", "MembershipChanged", "jobdone", ""]
  const fields = ["_tag", "v", "jobId", "jobType", "userName", "paras", "memo", "at", "errorCode", "errorInfo", "leader", "http", "term", "__proto__", "extra"]
  const json = jsonValues(fields, [fc.constantFrom(...tags), fc.constantFrom(0, 1, 2, -1)])
  // Rendered by hand (objectText), so that duplicate keys and an own `__proto__` key reach the decoder.
  const arbitrary = fc.array(fc.tuple(fc.constantFrom(...fields), json), { maxLength: 9 }).map(objectText)
  /** Job events one field at most from valid: each field kept, dropped, or given another value. */
  const nearlyValid = fc
    .record({
      tag: fc.constantFrom("JobAccepted", "JobStarted", "JobProgressed", "JobDone", "JobFailed"),
      jobId: fc.string(),
      at: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })),
      text: fc.string(),
      loose: json,
      swap: fc.option(fc.tuple(fc.constantFrom(...fields), fc.option(json)), { freq: 2 })
    })
    .map(({ at, jobId, loose, swap, tag, text }) => {
      const o: Array<[string, unknown]> = [["v", 1], ["jobId", jobId], ["at", at], ["_tag", tag]]
      if (tag === "JobAccepted") o.push(["jobType", "raft_mission"], ["userName", text], ["paras", loose])
      else o.push(["memo", loose])
      if (tag === "JobFailed") o.push(["errorCode", "70007"], ["errorInfo", text])
      if (swap !== null) {
        const [key, value] = swap
        const at = o.findIndex(([k]) => k === key)
        if (at >= 0 && value === null) o.splice(at, 1)
        else if (at >= 0) o[at] = [key, value]
        else o.push([key, value])
      }
      return objectText(o)
    })

  const same = (text: string) => {
    let bySchema: Event | undefined
    let schemaError: unknown
    try {
      bySchema = decodeEventJsonBySchema(text)
    } catch (e) {
      schemaError = e
    }
    if (bySchema !== undefined) {
      const plain = decodeEventJson(text)
      expect(plain).toStrictEqual(bySchema)
      expect(Object.getPrototypeOf(plain)).toBe(Object.getPrototypeOf(bySchema))
      expect(Object.keys(plain)).toStrictEqual(Object.keys(bySchema))
    } else {
      expect(() => decodeEventJson(text)).toThrow((schemaError as Error).message)
    }
  }

  it("on arbitrary objects, duplicate keys and __proto__ included", () => {
    fc.assert(fc.property(arbitrary, same), { numRuns: 3000 })
  })

  it("on job events one field from valid", () => {
    fc.assert(fc.property(nearlyValid, same), { numRuns: 3000 })
  })

  it("on what the journal holds, other events and text that is not JSON", () => {
    for (const e of [
      new JobAccepted({ v: 1, jobId: "7", jobType: "raft_mission", userName: "u", paras: { task_type: "transfer_leader" }, at: 5 }),
      new JobDone({ v: 1, jobId: "7", memo: null, at: 6 }),
      new JobFailed({ v: 1, jobId: "8", memo: [1], errorCode: "70007", errorInfo: "no", at: 7 }),
      new LeaderElected({ v: 1, leader: "a:1", http: "a:2", term: 3, at: 4 }),
      new MembershipChanged({ v: 1, voters: ["a:1"], outgoing: [], learners: [] })
    ]) {
      same(encodeEventJson(e))
      expect(decodeEventJson(encodeEventJson(e))).toStrictEqual(e)
    }
    for (const text of ["", "{", "[]", "null", "1", '{"_tag":"JobDone"}', '{"_tag":{"a":1},"v":1}']) same(text)
  })
})

