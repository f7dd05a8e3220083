/**
 * cluster_mgr as a library: what a larger Effect app needs to run nodes inside itself, use
 * them, serve their HTTP API from its own server, and audit their journals.
 *
 *   const node = yield* RaftNode                      // after providing ClusterMgr.layer(config)
 *   const id = yield* ClusterMgr.submitJob(node, { jobType, userName, paras })
 *   const job = yield* ClusterMgr.awaitJob(node, id)
 */

// A node from a Config value, and helpers over its RaftNode service.
export * as ClusterMgr from "./ClusterMgr.js"
export { NoSuchJob, type JobRequest } from "./ClusterMgr.js"
export { type NodeLayerOptions, StartupError, httpAddress, raftAddress } from "./node.js"
export { Config, ConfigError, parseConfig, renderConfig } from "./domain/config.js"

// The node's service: submit commands, read state, membership, leadership, applied entries.
export {
  Busy,
  InvalidChange,
  isLeader,
  type Leadership,
  NotLeader,
  OperationFailed,
  type RaftError,
  RaftNode,
  type RaftNodeApi
} from "./actors/RaftNode.js"
export type { AppliedEntry } from "./actors/StateMachine.js"
export type { RaftStatus, Role } from "./domain/raft/ready.js"

// Commands, events and the state they fold into.
export {
  FailJob,
  FinishJob,
  ProgressJob,
  PutMachine,
  RecordAgentReport,
  RemoveMachine,
  SetMachineStats,
  StartJob,
  StateCommand,
  SubmitJob,
  TakeOffice
} from "./domain/jobs.js"
export {
  Event,
  type EventTag,
  JobAccepted,
  JobDone,
  JobFailed,
  JobProgressed,
  JobStarted,
  JobStatus,
  LeaderElected,
  MembershipChanged,
  MachineAdded,
  MachineUpdated,
  MachineRemoved,
  MachineStatsChanged,
  AgentReported
} from "./domain/events.js"
export { AgentReport, Machine, MachineSpec, MachineType, NodeStats, ObservedInstance } from "./domain/machines.js"

// The fleet: how the leader reaches node_mgr agents, and the agent's protocol.
export { AgentClient, type AgentClientApi, AgentFailed, AgentUnreachable } from "./fleet/AgentClient.js"
export { FleetSettings, type FleetSettingsApi } from "./fleet/FleetSettings.js"
export * as NodeMgrProtocol from "./agent/protocol.js"
export { type ClusterState, emptyState, evolve, fold, fromJson, Job, StateJson, toJson } from "./domain/state.js"

// The HTTP API as a router to mount on the app's own server (with ClusterMgr.layer(config,
// { serveHttp: false })); it needs RaftNode, NodeHttpAddress and an HttpClient for forwarding.
export { emitPath, makeRouter } from "./http/server.js"
export { NodeHttpAddress } from "./actors/JobScheduler.js"

// A whole group in one process, over an in-memory network.
export { awaitLeader, type InProcessMember, type InProcessOptions, makeInProcessGroup } from "./inProcess.js"

// The audit of a data directory, as Effects (the CLI is `cluster_mgr audit`).
export * as Audit from "./audit/Audit.js"
export { AuditError, Divergence } from "./audit/errors.js"
export type { VerifyReport } from "./audit/verify.js"
export type { JobHistory } from "./audit/replay.js"
