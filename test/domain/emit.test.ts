import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc, Schema } from "effect"
import { decodeEmitBody, decodeEmitValue, decodeEmitValueBySchema, EmitRequest, jobTypes } from "../../src/domain/emit/envelope.js"
import {
  BadRequest,
  Busy,
  describe as describeValue,
  errorTable,
  excerpt,
  excerptLengthMax,
  Internal,
  JobFailed,
  NotFound,
  Timeout,
  Unavailable
} from "../../src/domain/emit/errors.js"
import { accepted, EmitReply, failure, jobStatus, syncResult } from "../../src/domain/emit/replies.js"
import { expectSameDecoding, jsonValues, objectText } from "../support/decoding.js"

const deepArray = (levels: number): string => "[".repeat(levels) + "]".repeat(levels)

/** The error_info of a body that must be refused; fails the test if it was accepted. */
const refusal = (body: string): BadRequest => {
  const result = decodeEmitBody(body)
  if (Either.isRight(result)) throw new Error(`accepted: ${body.slice(0, 80)}`)
  return result.left
}
const infoOf = (body: string): string => refusal(body).info

const accept = (body: string): EmitRequest => {
  const result = decodeEmitBody(body)
  if (Either.isLeft(result)) throw new Error(`refused: ${result.left.info}`)
  return result.right
}

describe("error table", () => {
  it("has unique numeric-string codes and unique names, each with a one-line meaning", () => {
    const codes = errorTable.map((entry) => entry.code)
    const names = errorTable.map((entry) => entry.name)
    expect(new Set(codes).size).toBe(codes.length)
    expect(new Set(names).size).toBe(names.length)
    for (const entry of errorTable) {
      expect(entry.code).toMatch(/^[1-9][0-9]*$/)
      expect(entry.meaning.length).toBeGreaterThan(10)
      expect(entry.meaning).not.toContain("\n")
    }
  })

  it("keeps Klustron's generic 70001 for validation errors", () => {
    expect(new BadRequest({ info: "x" }).code).toBe("70001")
  })

  it("gives each error class the code its name has in the table", () => {
    const errors = [
      new BadRequest({ info: "" }),
      new Unavailable({ info: "" }),
      new NotFound({ info: "" }),
      new Timeout({ info: "" }),
      new Internal({ info: "" }),
      new Busy({ info: "" }),
      new JobFailed({ info: "" })
    ]
    expect(errors.map((e) => [e._tag, e.code])).toEqual(errorTable.map((entry) => [entry.name, entry.code]))
  })
})

describe("excerpt and describe", () => {
  it("leave short strings as they are", () => {
    expect(excerpt("abc")).toBe("abc")
    expect(describeValue("abc")).toBe("'abc'")
  })

  it("truncate a long string to the limit and say its real length", () => {
    const text = excerpt("x".repeat(1 << 20))
    expect(text.startsWith("x".repeat(excerptLengthMax) + "...")).toBe(true)
    expect(text).toContain("(1048576 characters)")
    expect(text.length).toBeLessThan(excerptLengthMax + 30)
  })

  it("never cut a surrogate pair in two, and count characters, not UTF-16 units", () => {
    const text = excerpt("x".repeat(excerptLengthMax - 1) + "\u{1F600}".repeat(10))
    expect(text).toBe("x".repeat(excerptLengthMax - 1) + "... (109 characters)")
    expect(text).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/)
  })

  it("name non-string values by kind without serialising them", () => {
    expect([null, [], [1], {}, 5, true, undefined].map(describeValue)).toEqual([
      "null",
      "an empty array",
      "an array",
      "an object",
      "5",
      "true",
      "nothing"
    ])
  })
})

describe("decodeEmitBody: accepted requests", () => {
  it("decodes the seed's transfer_leader request field by field", () => {
    const request = accept(
      JSON.stringify({
        version: "1.0",
        job_id: "",
        job_type: "raft_mission",
        timestamp: "1435749309",
        user_name: "kunlun_test",
        paras: { task_type: "transfer_leader", target_leader: "127.0.0.1:59001" }
      })
    )
    expect(request).toEqual({
      version: "1.0",
      job_id: "",
      job_type: "raft_mission",
      timestamp: "1435749309",
      user_name: "kunlun_test",
      paras: { task_type: "transfer_leader", target_leader: "127.0.0.1:59001" }
    })
  })

  it("needs only job_type; paras defaults to an empty object and other fields stay absent", () => {
    expect(accept('{"job_type":"get_cluster_mgr_status"}')).toEqual({ job_type: "get_cluster_mgr_status", paras: {} })
  })

  it("knows every listed job type", () => {
    for (const jobType of jobTypes) expect(accept(JSON.stringify({ job_type: jobType })).job_type).toBe(jobType)
  })

  it("takes numbers in envelope string fields as their decimal text", () => {
    const request = accept('{"job_type":"get_status","job_id":12,"timestamp":1435749309,"version":1.5}')
    expect([request.job_id, request.timestamp, request.version]).toEqual(["12", "1435749309", "1.5"])
  })

  it("ignores unknown envelope fields, as Klustron does", () => {
    expect(accept('{"job_type":"get_meta_summary","extra":{"a":[1]}}')).toEqual({
      job_type: "get_meta_summary",
      paras: {}
    })
  })

  it("keeps paras as sent, leaving field validation to the command", () => {
    expect(accept('{"job_type":"create_cluster","paras":{"shards":"2","nested":{"a":[1,2]}}}').paras).toEqual({
      shards: "2",
      nested: { a: [1, 2] }
    })
  })

  it("accepts a paras value nested 10000 levels deep without recursing over it", () => {
    const request = accept(`{"job_type":"get_status","paras":{"deep":${deepArray(10000)}}}`)
    expect(Object.keys(request.paras)).toEqual(["deep"])
  })
})

describe("decodeEmitBody: refused requests, all with Klustron's 70001", () => {
  it("reports invalid JSON as `JSON parse error: <detail>`", () => {
    for (const body of ["", "abc", "{", '{"job_type":}', "{'job_type':'x'}"]) {
      const error = refusal(body)
      expect(error.code).toBe("70001")
      expect(error.info).toMatch(/^JSON parse error: .+/)
    }
  })

  it("refuses a lone UTF-16 surrogate anywhere in the body (not Unicode text), naming where, without echoing it", () => {
    const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
    const cases: Array<[string, string]> = [
      ['{"job_type":"get_status","job_id":"\\ud800"}', "(U+D800) in job_id"],
      ['{"job_type":"\\udfff\\ud800","paras":{}}', "(U+DFFF) in job_type"],
      ['{"job_type":"raft_mission","paras":{"task_type":"add_peer","peer":"1.2.3.4:5\\ud800"}}', "(U+D800) in paras.peer"],
      ['{"job_type":"get_status","job_id":"1","user_name":"x\\udc00"}', "(U+DC00) in user_name"],
      ['{"\\ud800x":1,"job_type":"get_status"}', "(U+D800) in a top-level key"],
      ['{"job_type":"get_status","paras":{"a":[1,{"b\\udc00":2}]}}', "(U+DC00) in a key of paras.a[1]"],
      ['{"job_type":"get_status","paras":{"a":["\\ud83d\\ude00","\\ude00"]}}', "(U+DE00) in paras.a[1]"]
    ]
    for (const [body, where] of cases) {
      const error = refusal(body)
      expect(error.code).toBe("70001")
      expect(error.info).toBe(`JSON parse error: a lone UTF-16 surrogate ${where} is not Unicode text`)
      expect(error.info).not.toMatch(lone)
    }
    // A pair is one character, escaped or not.
    expect(accept('{"job_type":"get_status","job_id":"1","paras":{"note":"\\ud83d\\ude00 \u{1F600}"}}').paras).toEqual({ note: "\u{1F600} \u{1F600}" })
  })

  it("finds a lone surrogate at the bottom of a deeply nested body in one pass", () => {
    const depth = 200_000
    const info = infoOf("[".repeat(depth) + '"\\ud83d"' + "]".repeat(depth))
    expect(info).toMatch(/^JSON parse error: a lone UTF-16 surrogate \(U\+D83D\) in \[0\]\[0\].*\.\.\. \(600000 characters\) is not Unicode text$/)
  })

  it("refuses a body that is not a JSON object, saying what it is", () => {
    expect(infoOf("[]")).toBe("The request body must be a JSON object, got an empty array")
    expect(infoOf('[{"job_type":"get_status"}]')).toBe("The request body must be a JSON object, got an array")
    expect(infoOf("null")).toBe("The request body must be a JSON object, got null")
    expect(infoOf("42")).toBe("The request body must be a JSON object, got 42")
    expect(infoOf('"get_status"')).toBe("The request body must be a JSON object, got 'get_status'")
  })

  it("uses Klustron's text for a missing job_type", () => {
    expect(infoOf("{}")).toBe("missing `job_type` key-value pair in the request body")
    expect(infoOf('{"paras":{}}')).toBe("missing `job_type` key-value pair in the request body")
  })

  it("uses Klustron's text for an empty or non-string job_type", () => {
    for (const value of ['""', "5", "null", "true", "{}", '["get_status"]']) {
      expect(infoOf(`{"job_type":${value}}`)).toBe("The field `job_type` in Body must be a non empty valid string")
    }
  })

  it("uses Klustron's spelling for an unknown job type, followed by the type", () => {
    expect(infoOf('{"job_type":"make_coffee"}')).toBe("Unrecongnized job type: make_coffee")
  })

  it("does not take Object.prototype's names for job types", () => {
    for (const name of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      expect(infoOf(JSON.stringify({ job_type: name }))).toBe(`Unrecongnized job type: ${name}`)
    }
  })

  it("echoes at most about 100 characters of a 1 MB job_type", () => {
    const info = infoOf(JSON.stringify({ job_type: "y".repeat(1 << 20) }))
    expect(info.startsWith("Unrecongnized job type: yyyy")).toBe(true)
    expect(info).toContain("(1048576 characters)")
    expect(info.length).toBeLessThan(200)
  })

  it("names the envelope field that holds an object, array, boolean or null instead of a string", () => {
    expect(infoOf('{"job_type":"get_status","job_id":{"a":1}}')).toBe(
      "The field `job_id` in Body must be a string, got an object"
    )
    expect(infoOf('{"job_type":"get_status","user_name":["u"]}')).toBe(
      "The field `user_name` in Body must be a string, got an array"
    )
    expect(infoOf('{"job_type":"get_status","version":true}')).toBe(
      "The field `version` in Body must be a string, got true"
    )
    expect(infoOf('{"job_type":"get_status","timestamp":null}')).toBe(
      "The field `timestamp` in Body must be a string, got null"
    )
  })

  it("refuses paras that is not an object: null, an array, a string, a number", () => {
    expect(infoOf('{"job_type":"get_status","paras":null}')).toBe(
      "The field `paras` in Body must be a JSON object, got null"
    )
    expect(infoOf('{"job_type":"get_status","paras":[]}')).toBe(
      "The field `paras` in Body must be a JSON object, got an empty array"
    )
    expect(infoOf('{"job_type":"get_status","paras":"a=b"}')).toBe(
      "The field `paras` in Body must be a JSON object, got 'a=b'"
    )
    expect(infoOf('{"job_type":"get_status","paras":3}')).toBe(
      "The field `paras` in Body must be a JSON object, got 3"
    )
  })

  it("refuses a __proto__ key in the body or in paras, and nothing reaches Object.prototype", () => {
    expect(infoOf('{"job_type":"get_status","__proto__":{"polluted":1}}')).toBe(
      "The key `__proto__` is not allowed in the request body"
    )
    expect(infoOf('{"job_type":"get_status","paras":{"__proto__":{"polluted":1}}}')).toBe(
      "The key `__proto__` is not allowed in `paras`"
    )
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it("survives 10000 and 100000 levels of nesting in every envelope field", () => {
    for (const levels of [10000, 100000]) {
      const deep = deepArray(levels)
      expect(infoOf(`{"job_type":${deep}}`)).toBe("The field `job_type` in Body must be a non empty valid string")
      expect(infoOf(`{"job_type":"get_status","paras":${deep}}`)).toBe(
        "The field `paras` in Body must be a JSON object, got an array"
      )
      for (const field of ["version", "job_id", "timestamp", "user_name"]) {
        expect(infoOf(`{"job_type":"get_status","${field}":${deep}}`)).toBe(
          `The field \`${field}\` in Body must be a string, got an array`
        )
      }
      expect(infoOf(deep)).toBe("The request body must be a JSON object, got an array")
    }
  })
})

describe("decodeEmitValue: the plain path gives what the schema gives", () => {
  const fields = ["job_type", "version", "job_id", "timestamp", "user_name", "paras"]
  const json = jsonValues([...fields, "__proto__", "extra"], [fc.constantFrom(...jobTypes, "", "Raft_Mission")])
  // Parsed from text, so that duplicate keys and an own `__proto__` key reach the decoder as from a client.
  const body = fc.array(fc.tuple(fc.constantFrom(...fields, "__proto__", "extra"), json), { maxLength: 8 }).map(objectText)
  const likelyValid = fc
    .record(
      {
        job_type: fc.constantFrom(...jobTypes),
        version: fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })),
        job_id: fc.oneof(fc.string(), fc.integer()),
        timestamp: fc.oneof(fc.string(), fc.integer()),
        user_name: fc.string(),
        paras: fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer()), { maxKeys: 3 })
      },
      { requiredKeys: ["job_type"] }
    )
    .map((r) => JSON.stringify(r))

  const same = (text: string) => {
    const value: unknown = JSON.parse(text)
    expectSameDecoding(decodeEmitValue(value), decodeEmitValueBySchema(value), (e) => e.info)
  }

  it("on arbitrary bodies, duplicate keys and __proto__ included", () => {
    fc.assert(fc.property(body, same), { numRuns: 3000 })
  })

  it("on bodies of the right shape, every job type, texts as strings or numbers", () => {
    fc.assert(fc.property(likelyValid, same), { numRuns: 3000 })
  })

  it("on the bodies Klustron's clients send", () => {
    for (const text of [
      `{"version":"1.0","job_id":"","job_type":"get_status","timestamp":"1435749309","user_name":"kunlun_test","paras":{}}`,
      `{"version":1,"job_type":"raft_mission","timestamp":1435749309,"paras":{"task_type":"transfer_leader","target_leader":"127.0.0.1:58011"}}`,
      `{"job_type":"get_cluster_mgr_status"}`,
      `{"job_type":"get_status","job_id":"12","paras":{"__proto__":{}}}`,
      `{"job_type":"get_status","user_name":null}`
    ]) same(text)
  })
})

describe("replies", () => {
  it("renders an accepted job exactly as Klustron does", () => {
    expect(JSON.stringify(accepted("12"))).toBe(
      '{"attachment":null,"error_code":"0","error_info":"","job_id":"12","status":"accept","version":"1.0"}'
    )
  })

  it("renders a failure before any job exists without a job_id", () => {
    expect(JSON.stringify(failure(new BadRequest({ info: "missing `job_type` key-value pair in the request body" })))).toBe(
      '{"attachment":null,"error_code":"70001","error_info":"missing `job_type` key-value pair in the request body","status":"failed","version":"1.0"}'
    )
  })

  it("renders get_status with the memo as attachment and no error while the job is fine", () => {
    expect(JSON.stringify(jobStatus("7", "ongoing", { step: "catch_up" }))).toBe(
      '{"attachment":{"step":"catch_up"},"error_code":"0","error_info":"","job_id":"7","status":"ongoing","version":"1.0"}'
    )
  })

  it("renders a failed or unknown job with its error code and info", () => {
    expect(JSON.stringify(jobStatus("99", "failed", null, new NotFound({ info: "no job with job_id 99" })))).toBe(
      '{"attachment":null,"error_code":"70003","error_info":"no job with job_id 99","job_id":"99","status":"failed","version":"1.0"}'
    )
    expect(jobStatus("5", "failed", { step: 2 }, { code: "70007", info: "install failed" })).toMatchObject({
      error_code: "70007",
      status: "failed"
    })
  })

  it("renders a synchronous result as done with error_code 0", () => {
    expect(JSON.stringify(syncResult({ leader: "127.0.0.1:58001" }))).toBe(
      '{"attachment":{"leader":"127.0.0.1:58001"},"error_code":"0","error_info":"","status":"done","version":"1.0"}'
    )
  })

  it("decodes every built reply with the reply schema, keeping key order", () => {
    const replies = [
      accepted("1"),
      failure(new Busy({ info: "a membership change is in progress" })),
      jobStatus("3", "done", { ids: [1, 2] }),
      jobStatus("3", "not_started"),
      syncResult([])
    ]
    for (const reply of replies) {
      const decoded = Schema.decodeUnknownSync(EmitReply)(JSON.parse(JSON.stringify(reply)))
      expect(JSON.stringify(decoded)).toBe(JSON.stringify(reply))
    }
  })

  it("rejects a reply with an unknown status", () => {
    const reply = { ...accepted("1"), status: "maybe" }
    expect(Either.isLeft(Schema.decodeUnknownEither(EmitReply)(reply))).toBe(true)
  })
})
