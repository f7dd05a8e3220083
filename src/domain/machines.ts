import { Schema } from "effect"

/**
 * The managed fleet's machines, as Klustron's server_nodes: where instances may be installed and
 * where the machine's node_mgr agent listens. Shared by events, the folded state and replies.
 */

export const MachineType = Schema.Literal("storage", "computer")
export type MachineType = typeof MachineType.Type

/** `running`: the agent answers pings; `dead`: it missed the configured number in a row. */
export const NodeStats = Schema.Literal("running", "dead")
export type NodeStats = typeof NodeStats.Type

/** What a machine is, as create_machine / update_machine give it. */
export const MachineSpec = Schema.Struct({
  hostaddr: Schema.String,
  machineType: MachineType,
  rackId: Schema.NullOr(Schema.String),
  portRange: Schema.String,
  datadir: Schema.NullOr(Schema.String),
  logdir: Schema.NullOr(Schema.String),
  walLogDir: Schema.NullOr(Schema.String),
  compDatadir: Schema.NullOr(Schema.String),
  totalMem: Schema.Number,
  totalCpuCores: Schema.Number,
  /** Port of the machine's node_mgr agent (its Emit endpoint). */
  nodeMgrPort: Schema.Number
})
export type MachineSpec = typeof MachineSpec.Type

/** An instance as the machine's agent last reported it. */
export const ObservedInstance = Schema.Struct({
  kind: Schema.String,
  port: Schema.Number,
  status: Schema.String,
  stoppedOnPurpose: Schema.Boolean
})
export type ObservedInstance = typeof ObservedInstance.Type

/** Something an agent did on its own (a restart of a dead instance), as it reported it. */
export const AgentReport = Schema.Struct({
  seq: Schema.Number,
  at: Schema.Number,
  kind: Schema.String,
  port: Schema.Number,
  event: Schema.String,
  detail: Schema.String
})
export type AgentReport = typeof AgentReport.Type

export const Machine = Schema.Struct({
  ...MachineSpec.fields,
  nodeStats: NodeStats,
  /** When node_stats last changed (the proposing leader's clock). */
  statsSince: Schema.Number,
  createdAt: Schema.Number,
  /** The job that created the machine: a second create_machine of the same host sees it is not its own. */
  createdBy: Schema.String,
  instances: Schema.Array(ObservedInstance),
  /** The highest agent report seq recorded: the leader acknowledges it with the next ping. */
  reportsAcked: Schema.Number,
  /** Instance restarts the agent reported, all time. */
  restartsReported: Schema.Number
})
export type Machine = typeof Machine.Type

/** The agent's Emit endpoint for a machine. */
export const agentAddress = (m: Pick<MachineSpec, "hostaddr" | "nodeMgrPort">): string => `${m.hostaddr}:${m.nodeMgrPort}`

/** Klustron's default node_mgr HTTP port, used when create_machine names none. */
export const defaultNodeMgrPort = 58010

export const sameInstances = (a: ReadonlyArray<ObservedInstance>, b: ReadonlyArray<ObservedInstance>): boolean =>
  a.length === b.length &&
  a.every((x, i) => x.kind === b[i].kind && x.port === b[i].port && x.status === b[i].status && x.stoppedOnPurpose === b[i].stoppedOnPurpose)

/** As the Emit API shows a machine: Klustron's column names. */
export const machineReply = (m: Machine) => ({
  hostaddr: m.hostaddr,
  machine_type: m.machineType,
  rack_id: m.rackId,
  port_range: m.portRange,
  datadir: m.datadir,
  logdir: m.logdir,
  wal_log_dir: m.walLogDir,
  comp_datadir: m.compDatadir,
  total_mem: m.totalMem,
  total_cpu_cores: m.totalCpuCores,
  nodemgr_port: m.nodeMgrPort,
  node_stats: m.nodeStats,
  node_stats_since: m.statsSince,
  created_at: m.createdAt,
  instances: m.instances.map((i) => ({ kind: i.kind, port: i.port, status: i.status, stopped_on_purpose: i.stoppedOnPurpose })),
  restarts_reported: m.restartsReported
})
