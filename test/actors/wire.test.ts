import { describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { decodeMessageValue, decodeMessageValueBySchema } from "../../src/actors/wire.js"
import { expectSameDecoding } from "../support/decoding.js"

/** Frames of every message type, valid or one field from valid, and arbitrary objects. */
const header = { group: fc.string(), from: fc.string(), to: fc.string(), term: fc.integer({ min: 0 }) }
const index = fc.integer({ min: 0, max: 1e9 })
const payload = fc.oneof(
  fc.record({ _tag: fc.constant("Command"), data: fc.string() }),
  fc.record({ _tag: fc.constant("Noop") }),
  fc.record({ _tag: fc.constant("Config"), config: fc.record({ voters: fc.array(fc.string()), outgoing: fc.constant([]), learners: fc.constant([]) }) })
)
const entry = fc.record({ index, term: index, payload })
const messages = fc.oneof(
  fc.record({ _tag: fc.constant("AppendEntries"), ...header, prevLogIndex: index, prevLogTerm: index, entries: fc.array(entry, { maxLength: 5 }), commit: index }),
  fc.record({
    _tag: fc.constant("AppendEntriesResp"),
    ...header,
    success: fc.boolean(),
    matchIndex: index,
    rejectedIndex: index,
    conflictTerm: index,
    conflictIndex: index
  }),
  fc.record({ _tag: fc.constant("Heartbeat"), ...header, commit: index, round: fc.integer() }),
  fc.record({ _tag: fc.constant("HeartbeatResp"), ...header, round: fc.integer(), lastIndex: index }),
  fc.record({ _tag: fc.constant("PreVote"), ...header, lastLogIndex: index, lastLogTerm: index }),
  fc.record({ _tag: fc.constant("TimeoutNow"), ...header })
)
const anyValue = fc.oneof(fc.string(), fc.double(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }), fc.object({ maxDepth: 1 }))
/** A message with one field changed, dropped or added, or one entry's field changed. */
const nearly = fc
  .tuple(messages, fc.string(), anyValue, fc.nat(), fc.constantFrom("change", "drop", "add", "entry", "payload"))
  .map(([m, key, value, n, how]) => {
    const o: Record<string, unknown> = JSON.parse(JSON.stringify(m))
    const keys = Object.keys(o)
    const k = keys[n % keys.length]
    if (how === "change") o[k] = value
    else if (how === "drop") delete o[k]
    else if (how === "add") o[key] = value
    else if (Array.isArray(o.entries) && o.entries.length > 0) {
      const e = o.entries[n % o.entries.length] as Record<string, unknown>
      if (how === "entry") e[["index", "term", "payload", key][n % 4]] = value
      else (e.payload as Record<string, unknown>)[["_tag", "data", key][n % 3]] = value
    }
    return o
  })

/** Key order too: a follower stores its entries' payloads as the text of what it decoded. */
const same = (value: unknown) => expectSameDecoding(decodeMessageValue(value), decodeMessageValueBySchema(value), (e) => e.reason)

describe("decodeMessageValue: replication's messages by hand give what the schema gives", () => {
  it("on every message type, as a peer sends them", () => {
    fc.assert(fc.property(messages, (m) => same(JSON.parse(JSON.stringify(m)))), { numRuns: 2000 })
  })

  it("on messages one field from valid", () => {
    fc.assert(fc.property(nearly, same), { numRuns: 4000 })
  })

  it("on arbitrary values, and a hostile tag", () => {
    fc.assert(fc.property(fc.oneof(anyValue, fc.object()), same), { numRuns: 1000 })
    for (const v of [null, [], "x", { _tag: "AppendEntries" }, { _tag: { toString: 1 } }, JSON.parse('{"_tag":"Heartbeat","__proto__":{"commit":1}}')]) same(v)
  })
})
