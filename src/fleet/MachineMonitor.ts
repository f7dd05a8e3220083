import { Clock, Duration, Effect, HashMap, Metric, Schedule, Schema } from "effect"
import { type RaftNodeApi, RaftNode } from "../actors/RaftNode.js"
import { agentAddress, type AgentReport, type Machine, type ObservedInstance, sameInstances } from "../domain/machines.js"
import { metrics } from "../actors/metrics.js"
import { AgentClient, type AgentClientApi } from "./AgentClient.js"
import { FleetSettings, type FleetSettingsApi } from "./FleetSettings.js"

/** What the monitor reads of a ping_pong answer; other fields are ignored. */
const PingInfo = Schema.Struct({
  instances: Schema.optionalWith(
    Schema.Array(
      Schema.Struct({
        kind: Schema.String,
        port: Schema.Number,
        status: Schema.String,
        stopped_on_purpose: Schema.optionalWith(Schema.Boolean, { default: () => false })
      })
    ),
    { default: () => [] }
  ),
  reports: Schema.optionalWith(
    Schema.Array(
      Schema.Struct({
        seq: Schema.Number,
        at: Schema.Number,
        kind: Schema.String,
        port: Schema.Number,
        event: Schema.String,
        detail: Schema.optionalWith(Schema.String, { default: () => "" })
      })
    ),
    { default: () => [] }
  )
})
const decodePingInfo = Schema.decodeUnknownEither(PingInfo)

const observed = (info: typeof PingInfo.Type): { instances: Array<ObservedInstance>; reports: Array<AgentReport> } => ({
  instances: info.instances
    .map((i) => ({ kind: i.kind, port: i.port, status: i.status, stoppedOnPurpose: i.stopped_on_purpose }))
    .sort((a, b) => a.port - b.port || (a.kind < b.kind ? -1 : 1)),
  reports: [...info.reports].sort((a, b) => a.seq - b.seq)
})

/**
 * The leader's watch over the fleet: every machine's agent is pinged each interval. A machine
 * whose agent misses `deadAfterMisses` pings in a row is marked dead, and running again when it
 * answers; each change is an event. A ping acknowledges the agent reports already recorded and
 * brings the new ones (instance restarts), which are recorded in turn. Runs in the leader's
 * scope; a new leader counts misses afresh.
 */
export const monitorMachines: Effect.Effect<never, never, RaftNode | AgentClient | FleetSettings> = Effect.gen(function* () {
  const node = yield* RaftNode
  const agents = yield* AgentClient
  const settings = yield* FleetSettings
  const misses = new Map<string, number>()
  const round = Effect.gen(function* () {
    const state = yield* node.localState
    for (const host of misses.keys()) if (!HashMap.has(state.machines, host)) misses.delete(host)
    yield* Effect.forEach(HashMap.values(state.machines), (m) => pingOne(node, agents, settings, misses, m), {
      concurrency: "unbounded",
      discard: true
    })
  })
  return yield* round.pipe(Effect.repeat(Schedule.spaced(Duration.millis(settings.pingIntervalMs))), Effect.zipRight(Effect.never))
})

const pingOne = (
  node: RaftNodeApi,
  agents: AgentClientApi,
  settings: FleetSettingsApi,
  misses: Map<string, number>,
  m: Machine
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const timeoutMs = Math.max(200, Math.min(settings.pingIntervalMs, 5000))
    const answer = yield* agents
      .call(agentAddress(m), "ping_pong", { ack_report_seq: String(m.reportsAcked) }, { timeoutMs })
      .pipe(Effect.either)
    const at = yield* Clock.currentTimeMillis
    if (answer._tag === "Left") {
      const n = (misses.get(m.hostaddr) ?? 0) + 1
      misses.set(m.hostaddr, n)
      yield* Metric.increment(metrics.pingsMissed)
      if (n >= settings.deadAfterMisses && m.nodeStats === "running") {
        const reason = answer.left._tag === "AgentUnreachable" ? answer.left.reason : answer.left.info
        yield* Effect.logWarning(`machine ${m.hostaddr}: ${n} pings missed (${reason}); marking it dead`)
        yield* node.submit({ _tag: "SetMachineStats", hostaddr: m.hostaddr, nodeStats: "dead", detail: `${n} pings missed: ${reason}`, at })
      }
      return
    }
    misses.set(m.hostaddr, 0)
    if (m.nodeStats === "dead") {
      yield* Effect.logInfo(`machine ${m.hostaddr}: its agent answers again; marking it running`)
      yield* node.submit({ _tag: "SetMachineStats", hostaddr: m.hostaddr, nodeStats: "running", detail: "the agent answers pings again", at })
    }
    const info = decodePingInfo(answer.right)
    if (info._tag === "Left") return yield* Effect.logWarning(`machine ${m.hostaddr}: ping_pong answer not understood`)
    const { instances, reports } = observed(info.right)
    const fresh = reports.filter((r) => r.seq > m.reportsAcked)
    if (fresh.length === 0 && sameInstances(instances, m.instances)) return
    for (const r of fresh) yield* Effect.logInfo(`machine ${m.hostaddr}: ${r.kind} instance on port ${r.port} ${r.event}: ${r.detail}`)
    yield* node.submit({ _tag: "RecordAgentReport", hostaddr: m.hostaddr, instances, reports: fresh, at })
  }).pipe(
    // A lost leadership or a busy log: the next round (or the next leader) tries again.
    Effect.catchAll((e) => Effect.logDebug(`machine ${m.hostaddr}: ${e._tag}`)),
    Effect.annotateLogs({ machine: m.hostaddr })
  )
