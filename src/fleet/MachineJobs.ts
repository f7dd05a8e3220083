import { Clock, Duration, Effect, HashMap, Metric, Option, Schedule, Schema } from "effect"
import { done, failed, type Outcome } from "../actors/JobOutcome.js"
import { metrics } from "../actors/metrics.js"
import type { RaftError, RaftNodeApi } from "../actors/RaftNode.js"
import { type Command, decodeJobParas } from "../domain/emit/commands.js"
import { agentAddress, defaultNodeMgrPort, type Machine, type MachineSpec } from "../domain/machines.js"
import type { Job } from "../domain/state.js"
import type { AgentClientApi, AgentError } from "./AgentClient.js"
import type { FleetSettingsApi } from "./FleetSettings.js"

/**
 * The fleet's jobs, run by the leader's scheduler. Each step is an event, and a job cut off by a
 * failover is run again from the start by the next leader: every step checks, then acts.
 */

export const machineJobTypes = ["create_machine", "update_machine", "delete_machine", "control_instance"] as const
export type MachineJobType = (typeof machineJobTypes)[number]
export const isMachineJob = (jobType: string): jobType is MachineJobType => (machineJobTypes as ReadonlyArray<string>).includes(jobType)

/** Jobs on one machine run one at a time (its lane); different machines' jobs run side by side. */
export const machineOfJob = (job: Job): string => {
  const paras = job.paras as Record<string, unknown> | null
  return typeof paras?.hostaddr === "string" ? paras.hostaddr : ""
}

export interface MachineJobContext {
  readonly node: RaftNodeApi
  readonly agents: AgentClientApi
  readonly settings: FleetSettingsApi
}

/** How long a job keeps trying an agent that does not answer before it fails. */
const unreachableBudgetMs = 30_000

const progress = (ctx: MachineJobContext, jobId: string, memo: Record<string, unknown>) =>
  Effect.flatMap(Clock.currentTimeMillis, (at) => ctx.node.submit({ _tag: "ProgressJob", jobId, memo, at }))

const machineOf = (ctx: MachineJobContext, hostaddr: string): Effect.Effect<Machine | undefined> =>
  Effect.map(ctx.node.localState, (s) => Option.getOrUndefined(HashMap.get(s.machines, hostaddr)))

/** One agent request; an agent that cannot be reached is tried again for a while. */
const ask = (
  ctx: MachineJobContext,
  agent: string,
  jobId: string,
  jobType: string,
  paras: Record<string, string>,
  budgetMs = unreachableBudgetMs
): Effect.Effect<unknown, AgentError> =>
  ctx.agents.call(agent, jobType, paras, { requestId: jobId, timeoutMs: ctx.settings.requestTimeoutMs }).pipe(
    Effect.tapBoth({
      onFailure: (e) => Metric.increment(Metric.tagged(Metric.tagged(metrics.agentRequests, "job_type", jobType), "outcome", e._tag)),
      onSuccess: () => Metric.increment(Metric.tagged(Metric.tagged(metrics.agentRequests, "job_type", jobType), "outcome", "success"))
    }),
    Effect.retry({
      while: (e) => e._tag === "AgentUnreachable",
      schedule: Schedule.spaced(Duration.millis(500)).pipe(Schedule.upTo(Duration.millis(budgetMs)))
    })
  )

const agentProblem = (e: AgentError): string =>
  e._tag === "AgentUnreachable" ? `node_mgr at ${e.agent} did not answer: ${e.reason}` : `node_mgr at ${e.agent} failed: ${e.info}`

export const specOf = (c: Extract<Command, { _tag: "create_machine" }>): MachineSpec => ({
  hostaddr: c.hostaddr,
  machineType: c.machine_type,
  rackId: c.rack_id ?? null,
  portRange: c.port_range,
  datadir: c.datadir ?? null,
  logdir: c.logdir ?? null,
  walLogDir: c.wal_log_dir ?? null,
  compDatadir: c.comp_datadir ?? null,
  totalMem: c.total_mem,
  totalCpuCores: c.total_cpu_cores,
  nodeMgrPort: c.nodemgr_port ?? defaultNodeMgrPort
})

export const updatedSpec = (m: MachineSpec, c: Extract<Command, { _tag: "update_machine" }>): MachineSpec => ({
  hostaddr: m.hostaddr,
  machineType: c.machine_type ?? m.machineType,
  rackId: c.rack_id ?? m.rackId,
  portRange: c.port_range ?? m.portRange,
  datadir: c.datadir ?? m.datadir,
  logdir: c.logdir ?? m.logdir,
  walLogDir: c.wal_log_dir ?? m.walLogDir,
  compDatadir: c.comp_datadir ?? m.compDatadir,
  totalMem: c.total_mem ?? m.totalMem,
  totalCpuCores: c.total_cpu_cores ?? m.totalCpuCores,
  nodeMgrPort: c.nodemgr_port ?? m.nodeMgrPort
})

const specOfMachine = (m: Machine): MachineSpec => ({
  hostaddr: m.hostaddr,
  machineType: m.machineType,
  rackId: m.rackId,
  portRange: m.portRange,
  datadir: m.datadir,
  logdir: m.logdir,
  walLogDir: m.walLogDir,
  compDatadir: m.compDatadir,
  totalMem: m.totalMem,
  totalCpuCores: m.totalCpuCores,
  nodeMgrPort: m.nodeMgrPort
})

export const runMachineJob = (ctx: MachineJobContext, job: Job, memo: Record<string, unknown>): Effect.Effect<Outcome, RaftError> => {
  const command = decodeJobParas(job.jobType, job.paras)
  if (command._tag === "Left") return Effect.succeed(failed(memo, command.left.info))
  const c = command.right
  switch (c._tag) {
    case "create_machine":
      return createMachine(ctx, job, memo, specOf(c))
    case "update_machine":
      return updateMachine(ctx, job, memo, c)
    case "delete_machine":
      return deleteMachine(ctx, job, memo, c.hostaddr, c.machine_type)
    case "control_instance":
      return controlInstance(ctx, job, memo, c.hostaddr, c.port, c.control)
    default:
      return Effect.succeed(failed(memo, `job_type ${c._tag} is not a machine job`))
  }
}

/** The agent is pinged first: a machine joins the fleet only with a live agent. */
const createMachine = (ctx: MachineJobContext, job: Job, memo: Record<string, unknown>, spec: MachineSpec) =>
  Effect.gen(function* () {
    const base = { ...memo, hostaddr: spec.hostaddr, nodemgr: agentAddress(spec) }
    const existing = yield* machineOf(ctx, spec.hostaddr)
    if (existing === undefined) {
      const ping = yield* ask(ctx, agentAddress(spec), job.id, "ping_pong", {}, 10_000).pipe(Effect.either)
      if (ping._tag === "Left") return failed(base, agentProblem(ping.left))
      const at = yield* Clock.currentTimeMillis
      yield* ctx.node.submit({ _tag: "PutMachine", mode: "create", machine: spec, jobId: job.id, at })
    }
    const after = yield* machineOf(ctx, spec.hostaddr)
    if (after === undefined || after.createdBy !== job.id) {
      return failed(base, `machine ${spec.hostaddr} already exists (use update_machine to change it)`)
    }
    return done({ ...base, node_stats: after.nodeStats })
  })

const updateMachine = (
  ctx: MachineJobContext,
  job: Job,
  memo: Record<string, unknown>,
  c: Extract<Command, { _tag: "update_machine" }>
) =>
  Effect.gen(function* () {
    const base = { ...memo, hostaddr: c.hostaddr }
    const m = yield* machineOf(ctx, c.hostaddr)
    if (m === undefined) return failed(base, `no machine with hostaddr ${c.hostaddr}`)
    const spec = updatedSpec(specOfMachine(m), c)
    if (spec.nodeMgrPort !== m.nodeMgrPort) {
      const ping = yield* ask(ctx, agentAddress(spec), job.id, "ping_pong", {}, 10_000).pipe(Effect.either)
      if (ping._tag === "Left") return failed(base, agentProblem(ping.left))
    }
    const at = yield* Clock.currentTimeMillis
    yield* ctx.node.submit({ _tag: "PutMachine", mode: "update", machine: spec, jobId: job.id, at })
    return done({ ...base, nodemgr: agentAddress(spec) })
  })

const deleteMachine = (ctx: MachineJobContext, job: Job, memo: Record<string, unknown>, hostaddr: string, machineType: string) =>
  Effect.gen(function* () {
    const base = { ...memo, hostaddr }
    const m = yield* machineOf(ctx, hostaddr)
    // Gone already: this job removed it before a failover cut it off.
    if (m === undefined) return done(base)
    if (m.machineType !== machineType) return failed(base, `machine ${hostaddr} is a ${m.machineType} machine, not ${machineType}`)
    const at = yield* Clock.currentTimeMillis
    yield* ctx.node.submit({ _tag: "RemoveMachine", hostaddr, jobId: job.id, at })
    return done(base)
  })

const AgentInstance = Schema.Struct({ port: Schema.Number, status: Schema.String, pid: Schema.optionalWith(Schema.NullOr(Schema.Number), { default: () => null }) })
const Listing = Schema.Struct({ instances: Schema.Array(AgentInstance) })
const decodeListing = Schema.decodeUnknownEither(Listing)

/**
 * start and stop are idempotent at the agent. A restart is recorded with the instance's pid
 * before it: a new leader resuming the job restarts again only if that pid still runs.
 */
const controlInstance = (
  ctx: MachineJobContext,
  job: Job,
  memo: Record<string, unknown>,
  hostaddr: string,
  port: number,
  control: "start" | "stop" | "restart"
) =>
  Effect.gen(function* () {
    const base = { ...memo, hostaddr, port, control }
    const m = yield* machineOf(ctx, hostaddr)
    if (m === undefined) return failed(base, `no machine with hostaddr ${hostaddr}`)
    const agent = agentAddress(m)
    const listing = yield* ask(ctx, agent, job.id, "list_instances", {}).pipe(Effect.either)
    if (listing._tag === "Left") return failed(base, agentProblem(listing.left))
    const decoded = decodeListing(listing.right)
    if (decoded._tag === "Left") return failed(base, `node_mgr at ${agent} answered list_instances with an unexpected shape`)
    const instance = decoded.right.instances.find((i) => i.port === port)
    if (instance === undefined) return failed(base, `node_mgr at ${agent} has no instance on port ${port}`)
    let action: string = control
    let memoNow: Record<string, unknown> = base
    if (control === "restart") {
      const before = typeof memo.pid_before === "number" ? memo.pid_before : undefined
      if (before === undefined) {
        memoNow = { ...base, step: "restarting", pid_before: instance.pid }
        yield* progress(ctx, job.id, memoNow)
      } else if (instance.pid !== before || instance.status !== "running") {
        // Restarted (or being restarted) on the previous leader's request: make sure it runs,
        // without restarting it a second time.
        action = "start"
        memoNow = { ...base, step: "restarting", pid_before: before }
      } else {
        memoNow = { ...base, step: "restarting", pid_before: before }
      }
    } else {
      yield* progress(ctx, job.id, { ...base, step: `${control}_requested` })
    }
    const result = yield* ask(ctx, agent, job.id, "control_instance", { port: String(port), control: action }).pipe(Effect.either)
    if (result._tag === "Left") return failed(memoNow, agentProblem(result.left))
    const { step: _step, ...rest } = memoNow
    void _step
    return done({ ...rest, instance: result.right })
  })

