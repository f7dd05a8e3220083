import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { decodeStateCommand, decodeStateCommandBySchema, encodeCommand, type StateCommand } from "../../src/domain/jobs.js"

const tags = ["SubmitJob", "StartJob", "FinishJob", "FailJob", "TakeOffice", "RemoveMachine", "Other"]
const keys = ["_tag", "jobType", "userName", "paras", "at", "doneMemo", "jobId", "memo", "extra"]

const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.string(),
    fc.constantFrom(...tags),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(fc.string(), tie("value"), { maxKeys: 3 })
  )
})).value

/** Entry data as a leader or a hostile peer could write it: JSON text, keys in any order and duplicated. */
const commandText = fc
  .array(fc.tuple(fc.constantFrom(...keys), json), { maxLength: 8 })
  .map((pairs) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`)

const submitJob = fc
  .record(
    {
      jobType: fc.string(),
      userName: fc.string(),
      paras: json,
      at: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })),
      doneMemo: json
    },
    { requiredKeys: ["jobType", "userName", "paras", "at"] }
  )
  .map((fields) => encodeCommand({ _tag: "SubmitJob", ...fields } as StateCommand))

/** A SubmitJob one step from valid: a key dropped, a value of any type, or an excess key. */
const nearlySubmitJob = fc
  .tuple(submitJob, fc.constantFrom(...keys), fc.constantFrom("drop", "replace"), json)
  .map(([text, key, how, value]) => {
    const fields = JSON.parse(text) as Record<string, unknown>
    if (how === "drop") delete fields[key]
    else fields[key] = value
    return JSON.stringify(fields)
  })

const same = (data: string) => {
  const plain = decodeStateCommand(data)
  const bySchema = decodeStateCommandBySchema(data)
  expect(Either.isRight(plain)).toBe(Either.isRight(bySchema))
  if (Either.isRight(plain) && Either.isRight(bySchema)) {
    expect(plain.right).toStrictEqual(bySchema.right)
    expect(Object.keys(plain.right)).toStrictEqual(Object.keys(bySchema.right))
  }
}

describe("decodeStateCommand: the plain path for SubmitJob gives what the schema gives", () => {
  it("on SubmitJob entries as a leader encodes them", () => {
    fc.assert(fc.property(submitJob, same), { numRuns: 3000 })
  })

  it("on SubmitJob entries one step from valid", () => {
    fc.assert(fc.property(nearlySubmitJob, same), { numRuns: 5000 })
  })

  it("on arbitrary entry data: other commands, wrong types, missing and excess keys", () => {
    fc.assert(fc.property(commandText, same), { numRuns: 5000 })
  })

  it("on text that is not JSON, and on JSON that is not an object", () => {
    for (const data of ["", "{", "null", "[]", "\"SubmitJob\"", "1", `{"_tag":"SubmitJob"`]) same(data)
  })

  it("refuses, without throwing, a tag that cannot be read as text (Effect's union parser calls String() on it)", () => {
    for (const tag of [`{"toString":""}`, `{"toString":1,"valueOf":1}`]) {
      const data = `{"_tag":${tag},"jobType":"","userName":"","paras":{},"at":0}`
      expect(Either.isLeft(decodeStateCommand(data))).toBe(true)
      same(data)
    }
    fc.assert(fc.property(fc.string(), same), { numRuns: 500 })
  })
})
