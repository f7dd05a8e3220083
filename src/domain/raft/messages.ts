import { Predicate, Schema } from "effect"
import { Entry, LogIndex, SnapshotMeta, Term } from "./types.js"

/**
 * Every Raft message carries the group id (a node refuses another group's traffic), sender,
 * receiver and the sender's term.
 */
const header = {
  group: Schema.String,
  from: Schema.String,
  to: Schema.String,
  term: Term
}

/** `term` is the term the sender would campaign in; receivers do not adopt it. */
export const PreVote = Schema.TaggedStruct("PreVote", {
  ...header,
  lastLogIndex: LogIndex,
  lastLogTerm: Term
})
export const PreVoteResp = Schema.TaggedStruct("PreVoteResp", { ...header, granted: Schema.Boolean })

/** `transfer` marks a campaign started by TimeoutNow: it overrides leader stickiness. */
export const RequestVote = Schema.TaggedStruct("RequestVote", {
  ...header,
  lastLogIndex: LogIndex,
  lastLogTerm: Term,
  transfer: Schema.Boolean
})
export const RequestVoteResp = Schema.TaggedStruct("RequestVoteResp", { ...header, granted: Schema.Boolean })

export const AppendEntries = Schema.TaggedStruct("AppendEntries", {
  ...header,
  prevLogIndex: LogIndex,
  prevLogTerm: Term,
  entries: Schema.Array(Entry),
  commit: LogIndex
})

/**
 * On success `matchIndex` is the last index known to match the leader. On rejection,
 * `rejectedIndex` is the prevLogIndex that did not match and the conflict hint lets the leader
 * skip a whole term at once: `conflictTerm` is the follower's term at that index (0 when the
 * follower's log is shorter) and `conflictIndex` the first index the leader should try.
 */
export const AppendEntriesResp = Schema.TaggedStruct("AppendEntriesResp", {
  ...header,
  success: Schema.Boolean,
  matchIndex: LogIndex,
  rejectedIndex: LogIndex,
  conflictTerm: Term,
  conflictIndex: LogIndex
})

/**
 * Heartbeats travel apart from data so they never queue behind it. `round` numbers the
 * leader's heartbeat broadcasts; an echoed round confirms leadership for ReadIndex and leases.
 */
export const Heartbeat = Schema.TaggedStruct("Heartbeat", { ...header, commit: LogIndex, round: Schema.Number })
export const HeartbeatResp = Schema.TaggedStruct("HeartbeatResp", {
  ...header,
  round: Schema.Number,
  lastIndex: LogIndex
})

/** A snapshot travels in chunks of its text; `offset` is where this chunk starts. */
export const InstallSnapshot = Schema.TaggedStruct("InstallSnapshot", {
  ...header,
  meta: SnapshotMeta,
  offset: Schema.Number,
  data: Schema.String,
  done: Schema.Boolean
})
/** `nextOffset` is what the follower expects next; `installed` once the whole image is applied. */
export const InstallSnapshotResp = Schema.TaggedStruct("InstallSnapshotResp", {
  ...header,
  index: LogIndex,
  nextOffset: Schema.Number,
  installed: Schema.Boolean
})

export const TimeoutNow = Schema.TaggedStruct("TimeoutNow", { ...header })

export const Message = Schema.Union(
  PreVote,
  PreVoteResp,
  RequestVote,
  RequestVoteResp,
  AppendEntries,
  AppendEntriesResp,
  Heartbeat,
  HeartbeatResp,
  InstallSnapshot,
  InstallSnapshotResp,
  TimeoutNow
)
export type Message = typeof Message.Type
export type MessageTag = Message["_tag"]
export type MessageOf<T extends MessageTag> = Extract<Message, { readonly _tag: T }>

type Fields = Record<string, unknown>
const isNumber = Predicate.isNumber
const isText = Predicate.isString

/** The header in the schema's order, or undefined when a field is not of its type. */
const plainHeader = (o: Fields) =>
  isText(o.group) && isText(o.from) && isText(o.to) && isNumber(o.term)
    ? { group: o.group, from: o.from, to: o.to, term: o.term }
    : undefined

/** A Command or Noop entry as the schema decodes it; Config entries (rare) take the schema. */
const plainEntry = (u: unknown): Entry | undefined => {
  if (typeof u !== "object" || u === null) return undefined
  const e = u as Fields
  const p = e.payload
  if (!isNumber(e.index) || !isNumber(e.term) || typeof p !== "object" || p === null) return undefined
  const payload = p as Fields
  if (payload._tag === "Command" && isText(payload.data)) {
    return { index: e.index, term: e.term, payload: { _tag: "Command", data: payload.data } }
  }
  if (payload._tag === "Noop") return { index: e.index, term: e.term, payload: { _tag: "Noop" } }
  return undefined
}

/**
 * The messages of the replication path, decoded without running the schema's parser when they
 * are in the shape it accepts (field by field, in the schema's key order, extra keys dropped as
 * the schema drops them). The parser's walk over a union of eleven messages, then each entry's
 * union of payloads, was about a tenth of what a follower allocated at concurrency 16. Everything
 * else (votes, snapshots, a Config entry, any field of another type) takes the schema, which
 * also words every error. test/raft/messages.test.ts holds the two equal on generated frames.
 */
export const decodePlainMessage = (value: unknown): Message | undefined => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined
  const o = value as Fields
  switch (o._tag) {
    case "AppendEntries": {
      const h = plainHeader(o)
      if (h === undefined || !isNumber(o.prevLogIndex) || !isNumber(o.prevLogTerm) || !isNumber(o.commit) || !Array.isArray(o.entries)) return undefined
      const entries: Array<Entry> = new Array(o.entries.length)
      for (let i = 0; i < o.entries.length; i++) {
        const entry = plainEntry(o.entries[i])
        if (entry === undefined) return undefined
        entries[i] = entry
      }
      return { _tag: "AppendEntries", ...h, prevLogIndex: o.prevLogIndex, prevLogTerm: o.prevLogTerm, entries, commit: o.commit }
    }
    case "AppendEntriesResp": {
      const h = plainHeader(o)
      return h !== undefined && typeof o.success === "boolean" && isNumber(o.matchIndex) && isNumber(o.rejectedIndex) &&
          isNumber(o.conflictTerm) && isNumber(o.conflictIndex)
        ? {
          _tag: "AppendEntriesResp",
          ...h,
          success: o.success,
          matchIndex: o.matchIndex,
          rejectedIndex: o.rejectedIndex,
          conflictTerm: o.conflictTerm,
          conflictIndex: o.conflictIndex
        }
        : undefined
    }
    case "Heartbeat": {
      const h = plainHeader(o)
      return h !== undefined && isNumber(o.commit) && isNumber(o.round) ? { _tag: "Heartbeat", ...h, commit: o.commit, round: o.round } : undefined
    }
    case "HeartbeatResp": {
      const h = plainHeader(o)
      return h !== undefined && isNumber(o.round) && isNumber(o.lastIndex) ? { _tag: "HeartbeatResp", ...h, round: o.round, lastIndex: o.lastIndex } : undefined
    }
    default:
      return undefined
  }
}
