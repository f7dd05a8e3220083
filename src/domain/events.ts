import { Predicate, Schema } from "effect"
import { AgentReport, MachineSpec, NodeStats, ObservedInstance } from "./machines.js"

/**
 * Every change of the replicated state is one of these events. Each carries `v`, its schema
 * version: a new version is a new member of the union, and old ones stay decodable forever,
 * because the journal is replayed for audit long after the code that wrote it changed.
 */

export const JobStatus = Schema.Literal("not_started", "ongoing", "done", "failed")
export type JobStatus = typeof JobStatus.Type

/** A job was accepted: it got its id, which the client receives. */
export class JobAccepted extends Schema.TaggedClass<JobAccepted>()("JobAccepted", {
  v: Schema.Literal(1),
  jobId: Schema.String,
  jobType: Schema.String,
  userName: Schema.String,
  /** The request's paras as received, for the job log and for resuming the job. */
  paras: Schema.Unknown,
  at: Schema.Number
}) {}

export class JobStarted extends Schema.TaggedClass<JobStarted>()("JobStarted", {
  v: Schema.Literal(1),
  jobId: Schema.String,
  memo: Schema.Unknown,
  at: Schema.Number
}) {}

/** A step of a running job, with the memo as it stands after the step. */
export class JobProgressed extends Schema.TaggedClass<JobProgressed>()("JobProgressed", {
  v: Schema.Literal(1),
  jobId: Schema.String,
  memo: Schema.Unknown,
  at: Schema.Number
}) {}

export class JobDone extends Schema.TaggedClass<JobDone>()("JobDone", {
  v: Schema.Literal(1),
  jobId: Schema.String,
  memo: Schema.Unknown,
  at: Schema.Number
}) {}

export class JobFailed extends Schema.TaggedClass<JobFailed>()("JobFailed", {
  v: Schema.Literal(1),
  jobId: Schema.String,
  memo: Schema.Unknown,
  errorCode: Schema.String,
  errorInfo: Schema.String,
  at: Schema.Number
}) {}

/** The Raft membership changed (a configuration entry was applied). */
export class MembershipChanged extends Schema.TaggedClass<MembershipChanged>()("MembershipChanged", {
  v: Schema.Literal(1),
  voters: Schema.Array(Schema.String),
  outgoing: Schema.Array(Schema.String),
  learners: Schema.Array(Schema.String)
}) {}

/** A leader took office; `leader` is its raft address, `http` where it serves Emit. */
export class LeaderElected extends Schema.TaggedClass<LeaderElected>()("LeaderElected", {
  v: Schema.Literal(1),
  leader: Schema.String,
  http: Schema.String,
  term: Schema.Number,
  at: Schema.Number
}) {}

/** A machine joined the fleet (create_machine, after its agent answered a ping). */
export class MachineAdded extends Schema.TaggedClass<MachineAdded>()("MachineAdded", {
  v: Schema.Literal(1),
  machine: MachineSpec,
  jobId: Schema.String,
  at: Schema.Number
}) {}

/** update_machine: the machine's description as it is now. */
export class MachineUpdated extends Schema.TaggedClass<MachineUpdated>()("MachineUpdated", {
  v: Schema.Literal(1),
  machine: MachineSpec,
  jobId: Schema.String,
  at: Schema.Number
}) {}

export class MachineRemoved extends Schema.TaggedClass<MachineRemoved>()("MachineRemoved", {
  v: Schema.Literal(1),
  hostaddr: Schema.String,
  jobId: Schema.String,
  at: Schema.Number
}) {}

/** The leader's pings found the machine's agent dead, or back. */
export class MachineStatsChanged extends Schema.TaggedClass<MachineStatsChanged>()("MachineStatsChanged", {
  v: Schema.Literal(1),
  hostaddr: Schema.String,
  nodeStats: NodeStats,
  detail: Schema.String,
  at: Schema.Number
}) {}

/** What an agent reported with a ping: its instances (when they changed) and new reports. */
export class AgentReported extends Schema.TaggedClass<AgentReported>()("AgentReported", {
  v: Schema.Literal(1),
  hostaddr: Schema.String,
  instances: Schema.Array(ObservedInstance),
  reports: Schema.Array(AgentReport),
  at: Schema.Number
}) {}

export const Event = Schema.Union(
  JobAccepted,
  JobStarted,
  JobProgressed,
  JobDone,
  JobFailed,
  MembershipChanged,
  LeaderElected,
  MachineAdded,
  MachineUpdated,
  MachineRemoved,
  MachineStatsChanged,
  AgentReported
)
export type Event = typeof Event.Type
export type EventTag = Event["_tag"]

/** The Schema encoding of an event as JSON, which encodeEventJson must equal. */
export const encodeEventJsonBySchema = Schema.encodeSync(Schema.parseJson(Event))

/**
 * Job events are most of the journal, and their fields encode to themselves (strings, numbers,
 * Unknown paras and memo), so JSON.stringify of their fields in the schema's order, `_tag` last
 * as Schema writes it, is their Schema encoding at a fraction of the cost: encoding them took
 * 2.7% of a leader's CPU at c=64. test/domain/events.test.ts holds the two equal; every other
 * event takes the Schema path.
 */
const plainFields = new Map<string, ReadonlyArray<string>>(
  [JobAccepted, JobStarted, JobProgressed, JobDone, JobFailed].map((c) => [c.identifier, Object.keys(c.fields).filter((k) => k !== "_tag")])
)

/** An event as the journal stores it: its Schema encoding, as JSON. */
export const encodeEventJson = (e: Event): string => {
  const keys = plainFields.get(e._tag)
  if (keys === undefined) return encodeEventJsonBySchema(e)
  const plain: Record<string, unknown> = {}
  for (const k of keys) {
    const v = (e as unknown as Record<string, unknown>)[k]
    if (v !== undefined) plain[k] = v
  }
  plain._tag = e._tag
  return JSON.stringify(plain)
}

/** The Schema decoding of an event's JSON, which decodeEventJson must equal. Throws a ParseError. */
export const decodeEventJsonBySchema = Schema.decodeUnknownSync(Schema.parseJson(Event))

type Fields = Record<string, unknown>
const isText = Predicate.isString
const isNumber = Predicate.isNumber

/**
 * Job events, read back without running the schema's parser when they are in the shape their
 * schema accepts: a job event's fields are strings, numbers and Unknown (paras, memo). The schema
 * decoding (a union of twelve classes, then each struct) was half of a restarted node's folding of
 * its journal: 120 of 255 ms for about 20,000 events. A constructor called with validation off is
 * what the schema's class transformation calls too. Anything else (another event, a field of
 * another type, a missing one) takes the schema from the text again, which also words every
 * error as before.
 * test/domain/events.test.ts holds the two equal on generated rows.
 */
const plainDecoders: ReadonlyMap<string, (o: Fields) => Event | undefined> = new Map<string, (o: Fields) => Event | undefined>([
  ["JobAccepted", (o) =>
    isText(o.jobId) && isText(o.jobType) && isText(o.userName) && isNumber(o.at)
      ? new JobAccepted({ v: 1, jobId: o.jobId, jobType: o.jobType, userName: o.userName, paras: o.paras, at: o.at }, true)
      : undefined],
  ["JobStarted", (o) =>
    isText(o.jobId) && isNumber(o.at) ? new JobStarted({ v: 1, jobId: o.jobId, memo: o.memo, at: o.at }, true) : undefined],
  ["JobProgressed", (o) =>
    isText(o.jobId) && isNumber(o.at) ? new JobProgressed({ v: 1, jobId: o.jobId, memo: o.memo, at: o.at }, true) : undefined],
  ["JobDone", (o) =>
    isText(o.jobId) && isNumber(o.at) ? new JobDone({ v: 1, jobId: o.jobId, memo: o.memo, at: o.at }, true) : undefined],
  ["JobFailed", (o) =>
    isText(o.jobId) && isNumber(o.at) && isText(o.errorCode) && isText(o.errorInfo)
      ? new JobFailed({ v: 1, jobId: o.jobId, memo: o.memo, errorCode: o.errorCode, errorInfo: o.errorInfo, at: o.at }, true)
      : undefined]
])

/** An event from the journal's JSON (decodeEventJsonBySchema's result). Throws a ParseError. */
export const decodeEventJson = (json: string): Event => {
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch {
    return decodeEventJsonBySchema(json)
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const o = value as Fields
    const decode = typeof o._tag === "string" && o.v === 1 ? plainDecoders.get(o._tag) : undefined
    const event = decode?.(o)
    if (event !== undefined) return event
  }
  return decodeEventJsonBySchema(json)
}

