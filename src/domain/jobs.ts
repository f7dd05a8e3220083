import { Either, HashMap, Option, Schema } from "effect"
import {
  type Event,
  JobAccepted,
  JobDone,
  JobFailed,
  JobProgressed,
  JobStarted,
  LeaderElected,
  MachineAdded,
  MachineRemoved,
  MachineStatsChanged,
  MachineUpdated,
  MembershipChanged,
  AgentReported
} from "./events.js"
import { AgentReport, MachineSpec, NodeStats, ObservedInstance, sameInstances } from "./machines.js"
import type { Entry } from "./raft/types.js"
import { type ClusterState, evolve } from "./state.js"
import { totalDecoder } from "./totalDecode.js"

/**
 * What a Raft command entry carries: an intent, decided into events only when the entry is
 * applied, on every replica alike. Times are the proposing leader's clock, so replicas agree.
 */
export const SubmitJob = Schema.TaggedStruct("SubmitJob", {
  jobType: Schema.String,
  userName: Schema.String,
  paras: Schema.Unknown,
  at: Schema.Number,
  /** A job whose outcome is known at acceptance (a transfer to the leader itself) ends at once. */
  doneMemo: Schema.optional(Schema.Unknown)
})
export const StartJob = Schema.TaggedStruct("StartJob", { jobId: Schema.String, memo: Schema.Unknown, at: Schema.Number })
export const ProgressJob = Schema.TaggedStruct("ProgressJob", { jobId: Schema.String, memo: Schema.Unknown, at: Schema.Number })
export const FinishJob = Schema.TaggedStruct("FinishJob", { jobId: Schema.String, memo: Schema.Unknown, at: Schema.Number })
export const FailJob = Schema.TaggedStruct("FailJob", {
  jobId: Schema.String,
  memo: Schema.Unknown,
  errorCode: Schema.String,
  errorInfo: Schema.String,
  at: Schema.Number
})
/** A new leader announces itself once its no-op is committed. */
export const TakeOffice = Schema.TaggedStruct("TakeOffice", {
  leader: Schema.String,
  http: Schema.String,
  term: Schema.Number,
  at: Schema.Number
})

/** create_machine (mode create: only if the host is new) or update_machine (only if it exists). */
export const PutMachine = Schema.TaggedStruct("PutMachine", {
  mode: Schema.Literal("create", "update"),
  machine: MachineSpec,
  jobId: Schema.String,
  at: Schema.Number
})
export const RemoveMachine = Schema.TaggedStruct("RemoveMachine", { hostaddr: Schema.String, jobId: Schema.String, at: Schema.Number })
/** The leader's verdict on a machine's agent after its pings. */
export const SetMachineStats = Schema.TaggedStruct("SetMachineStats", {
  hostaddr: Schema.String,
  nodeStats: NodeStats,
  detail: Schema.String,
  at: Schema.Number
})
/** What a ping brought back: the agent's instances and its reports not yet recorded. */
export const RecordAgentReport = Schema.TaggedStruct("RecordAgentReport", {
  hostaddr: Schema.String,
  instances: Schema.Array(ObservedInstance),
  reports: Schema.Array(AgentReport),
  at: Schema.Number
})

export const StateCommand = Schema.Union(
  SubmitJob,
  StartJob,
  ProgressJob,
  FinishJob,
  FailJob,
  TakeOffice,
  PutMachine,
  RemoveMachine,
  SetMachineStats,
  RecordAgentReport
)
export type StateCommand = typeof StateCommand.Type

const StateCommandJson = Schema.parseJson(StateCommand)
/**
 * A command's entry data. The StateCommand schema has no transformations, so its encoded form is
 * the value itself and running the encoder (1.5% of a leader's CPU) would only cost time; the
 * annotation stops compiling if a transformation is ever added. Replicas decode with the schema.
 */
export const encodeCommand = (command: StateCommand): string => {
  const encoded: typeof StateCommand.Encoded = command
  return JSON.stringify(encoded)
}
const decodeCommandBySchema = totalDecoder(StateCommandJson)
const decodeParsedCommand = totalDecoder(StateCommand)

/**
 * The schema's result for a SubmitJob, every job's first entry, as the leader encoded it (the
 * fields with their types, `paras` present), built without running the schema's union parser;
 * undefined for anything else, left to the schema. test/domain/jobs.test.ts holds both to the
 * same result on generated data, since every replica must decide an entry alike.
 */
const decodePlainSubmitJob = (value: unknown): StateCommand | undefined => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined
  const v = value as { readonly [key: string]: unknown }
  if (v._tag !== "SubmitJob" || !Object.hasOwn(v, "paras")) return undefined
  const { jobType, userName, at } = v
  if (typeof jobType !== "string" || typeof userName !== "string" || typeof at !== "number") return undefined
  const command: { -readonly [K in keyof typeof SubmitJob.Type]: (typeof SubmitJob.Type)[K] } = {
    _tag: "SubmitJob",
    jobType,
    userName,
    paras: v.paras,
    at
  }
  if (Object.hasOwn(v, "doneMemo")) command.doneMemo = v.doneMemo
  return command
}

/** An entry's command, or why it does not decode (the schema's error). */
export const decodeStateCommand = (data: string): Either.Either<StateCommand, unknown> => {
  let value: unknown
  try {
    value = JSON.parse(data)
  } catch {
    return decodeCommandBySchema(data)
  }
  const plain = decodePlainSubmitJob(value)
  return plain !== undefined ? Either.right(plain) : decodeParsedCommand(value)
}

/** The schema alone: the reference the tests hold decodeStateCommand to. */
export const decodeStateCommandBySchema: (data: string) => Either.Either<StateCommand, unknown> = decodeCommandBySchema

const isOpen = (state: ClusterState, jobId: string): boolean => {
  const job = HashMap.get(state.jobs, jobId)
  return Option.isSome(job) && (job.value.status === "not_started" || job.value.status === "ongoing")
}

const stripTag = <A extends { _tag: string }>(a: A): Omit<A, "_tag"> => {
  const { _tag, ...rest } = a
  void _tag
  return rest
}

/**
 * A job event's fields are a decoded command's (validated by StateCommand) plus `v`: checking
 * them again in the event's constructor cost 1.4% of a leader's CPU at c=64.
 */
const trusted = true

/**
 * The events a command produces against the current state. Job updates are idempotent: a job
 * that is already finished ignores later updates (a resumed job may repeat a step).
 */
export const decide = (command: StateCommand, state: ClusterState): Array<Event> => {
  switch (command._tag) {
    case "SubmitJob": {
      const jobId = String(state.nextJobId)
      const accepted = new JobAccepted(
        { v: 1, jobId, jobType: command.jobType, userName: command.userName, paras: command.paras, at: command.at },
        trusted
      )
      if (command.doneMemo === undefined) return [accepted]
      return [accepted, new JobDone({ v: 1, jobId, memo: command.doneMemo, at: command.at }, trusted)]
    }
    case "StartJob":
      return isOpen(state, command.jobId) ? [new JobStarted({ v: 1, ...stripTag(command) }, trusted)] : []
    case "ProgressJob":
      return isOpen(state, command.jobId) ? [new JobProgressed({ v: 1, ...stripTag(command) }, trusted)] : []
    case "FinishJob":
      return isOpen(state, command.jobId) ? [new JobDone({ v: 1, ...stripTag(command) }, trusted)] : []
    case "FailJob":
      return isOpen(state, command.jobId) ? [new JobFailed({ v: 1, ...stripTag(command) }, trusted)] : []
    case "TakeOffice":
      return command.term > state.leaderTerm ? [new LeaderElected({ v: 1, ...stripTag(command) })] : []
    case "PutMachine": {
      const exists = HashMap.has(state.machines, command.machine.hostaddr)
      const { machine, jobId, at } = command
      if (command.mode === "create") return exists ? [] : [new MachineAdded({ v: 1, machine, jobId, at })]
      return exists ? [new MachineUpdated({ v: 1, machine, jobId, at })] : []
    }
    case "RemoveMachine":
      return HashMap.has(state.machines, command.hostaddr) ? [new MachineRemoved({ v: 1, ...stripTag(command) })] : []
    case "SetMachineStats": {
      const m = HashMap.get(state.machines, command.hostaddr)
      return Option.isSome(m) && m.value.nodeStats !== command.nodeStats ? [new MachineStatsChanged({ v: 1, ...stripTag(command) })] : []
    }
    case "RecordAgentReport": {
      const m = HashMap.get(state.machines, command.hostaddr)
      if (Option.isNone(m)) return []
      // A report already recorded (a ping answered twice, a leader change) is not recorded again.
      const reports = command.reports.filter((r) => r.seq > m.value.reportsAcked)
      if (reports.length === 0 && sameInstances(m.value.instances, command.instances)) return []
      return [new AgentReported({ v: 1, hostaddr: command.hostaddr, instances: command.instances, reports, at: command.at })]
    }
  }
}

/** Applying one committed entry: its events and the state after them. */
export const applyEntry = (state: ClusterState, entry: Entry): { state: ClusterState; events: Array<Event> } => {
  const events = entryEvents(state, entry)
  let s = state
  for (const e of events) s = evolve(s, e)
  return { state: s, events }
}

const entryEvents = (state: ClusterState, entry: Entry): Array<Event> => {
  const p = entry.payload
  switch (p._tag) {
    case "Noop":
      return []
    case "Config":
      return [new MembershipChanged({ v: 1, ...p.config })]
    case "Command": {
      const decoded = decodeStateCommand(p.data)
      // An undecodable command was proposed by a buggy or newer leader; every replica skips it
      // alike, so the replicas stay identical.
      return Either.isRight(decoded) ? decide(decoded.right, state) : []
    }
  }
}

