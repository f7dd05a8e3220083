import { Schema } from "effect"

/** A Raft member is named by its raft address, "ip:raft_port", as in Klustron. */
export const NodeId = Schema.String
export type NodeId = string

export const Term = Schema.Number
export type Term = number
export const LogIndex = Schema.Number
export type LogIndex = number

/**
 * A membership. `outgoing` non-empty means a joint configuration C(old,new): decisions need a
 * majority of `voters` and a majority of `outgoing`. Learners receive the log but never vote.
 */
export const Configuration = Schema.Struct({
  voters: Schema.Array(Schema.String),
  outgoing: Schema.Array(Schema.String),
  learners: Schema.Array(Schema.String)
})
export type Configuration = typeof Configuration.Type

/** What an entry carries: a state-machine command, a no-op of a new leader, or a membership. */
export const EntryPayload = Schema.Union(
  Schema.TaggedStruct("Command", { data: Schema.String }),
  Schema.TaggedStruct("Noop", {}),
  Schema.TaggedStruct("Config", { config: Configuration })
)
export type EntryPayload = typeof EntryPayload.Type

export const Entry = Schema.Struct({
  index: LogIndex,
  term: Term,
  payload: EntryPayload
})
export type Entry = typeof Entry.Type

/** Term and vote (and the commit index, so a restart need not rediscover it) must be durable. */
export const HardState = Schema.Struct({
  term: Term,
  vote: Schema.NullOr(Schema.String),
  commit: LogIndex
})
export type HardState = typeof HardState.Type

export const SnapshotMeta = Schema.Struct({
  index: LogIndex,
  term: Term,
  config: Configuration
})
export type SnapshotMeta = typeof SnapshotMeta.Type

/** A snapshot: the state machine's image at `meta.index`, as opaque text. */
export const Snapshot = Schema.Struct({
  meta: SnapshotMeta,
  data: Schema.String
})
export type Snapshot = typeof Snapshot.Type
