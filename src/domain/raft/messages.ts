import { Schema } from "effect"
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
