import { Schema } from "effect"
import { Kind, Report, ReportEvent } from "./protocol.js"

/**
 * The agent's durable state, pure: the instances it manages, whether each was stopped on
 * purpose, and the queue of reports cluster_mgr has not acknowledged yet. Persisted as one JSON
 * document (StateStore); every change here is a pure function returning a new state.
 */

export const Replication = Schema.Struct({ primary_host: Schema.String, primary_port: Schema.Int })
export type Replication = typeof Replication.Type

export const InstanceRecord = Schema.Struct({
  kind: Kind,
  port: Schema.Int,
  /** `<root>/<port>`: everything of the instance lives below it. */
  dir: Schema.String,
  /** The last process the agent started or adopted; liveness is checked, never assumed. */
  pid: Schema.NullOr(Schema.Int),
  stopped_on_purpose: Schema.Boolean,
  /** Restarts the supervisor made (operator starts are not counted). */
  restarts: Schema.Int,
  /** Storage replicas: whom they replicate from; they start read-only. */
  replica_of: Schema.NullOr(Replication),
  created_at: Schema.Number
})
export type InstanceRecord = typeof InstanceRecord.Type

export const stateVersion = 1

export const AgentState = Schema.Struct({
  version: Schema.Literal(stateVersion),
  next_seq: Schema.Int,
  instances: Schema.Array(InstanceRecord),
  reports: Schema.Array(Report)
})
export type AgentState = typeof AgentState.Type

export const emptyState: AgentState = { version: stateVersion, next_seq: 1, instances: [], reports: [] }

/**
 * Reports kept at most: an agent whose cluster_mgr never acknowledges drops the oldest. The
 * supervisor's retries back off, so this takes days of a flapping instance with no leader.
 */
export const reportsMax = 10_000

export const findInstance = (state: AgentState, port: number): InstanceRecord | undefined =>
  state.instances.find((i) => i.port === port)

/** Adds or replaces the record of `record.port`; instances stay sorted by port. */
export const putInstance = (state: AgentState, record: InstanceRecord): AgentState => ({
  ...state,
  instances: [...state.instances.filter((i) => i.port !== record.port), record].sort((a, b) => a.port - b.port)
})

export const updateInstance = (
  state: AgentState,
  port: number,
  f: (record: InstanceRecord) => InstanceRecord
): AgentState => {
  const record = findInstance(state, port)
  return record === undefined ? state : putInstance(state, f(record))
}

export const removeInstance = (state: AgentState, port: number): AgentState => ({
  ...state,
  instances: state.instances.filter((i) => i.port !== port)
})

export interface ReportInput {
  readonly at: number
  readonly kind: Kind
  readonly port: number
  readonly event: ReportEvent
  readonly detail: string
}

/** Appends a report with the next seq; seqs only grow, across restarts too. */
export const addReport = (state: AgentState, input: ReportInput): AgentState => {
  const report: Report = { seq: state.next_seq, ...input }
  const reports = [...state.reports, report]
  return { ...state, next_seq: state.next_seq + 1, reports: reports.slice(Math.max(0, reports.length - reportsMax)) }
}

/** Drops every report up to and including `seq` (cluster_mgr has recorded them). */
export const ackReports = (state: AgentState, seq: number): AgentState =>
  state.reports.some((r) => r.seq <= seq) ? { ...state, reports: state.reports.filter((r) => r.seq > seq) } : state
