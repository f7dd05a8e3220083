import { Clock, Context, Effect, HashMap, Layer, Metric, Option, Queue, Stream } from "effect"
import type { StateCommand } from "../domain/jobs.js"
import type { Event } from "../domain/events.js"
import { type ClusterState, type Job, unfinishedJobs } from "../domain/state.js"
import { AgentClient } from "../fleet/AgentClient.js"
import { FleetSettings } from "../fleet/FleetSettings.js"
import { monitorMachines } from "../fleet/MachineMonitor.js"
import { isMachineJob, machineOfJob, type MachineJobContext, runMachineJob } from "../fleet/MachineJobs.js"
import { jobFailedCode, type Outcome } from "./JobOutcome.js"
import { metrics } from "./metrics.js"
import type { AppliedEntry } from "./StateMachine.js"
import { isLeader, type Leadership, type RaftError, RaftNode, type RaftNodeApi } from "./RaftNode.js"

/** Where this node serves HTTP: a new leader announces it so followers can forward to it. */
export class NodeHttpAddress extends Context.Tag("cluster_mgr/NodeHttpAddress")<NodeHttpAddress, string>() {}

const now = Clock.currentTimeMillis

const paraText = (job: Job, key: string): string => {
  const paras = job.paras as Record<string, unknown> | null
  const v = paras?.[key]
  return typeof v === "string" ? v : String(v ?? "")
}

/**
 * The lane a job runs in: jobs of one lane run one at a time in id order, lanes side by side.
 * Group membership jobs share one lane; each machine has its own.
 */
const laneOf = (job: Job | undefined): string => (job && isMachineJob(job.jobType) ? `machine:${machineOfJob(job)}` : "raft")

/**
 * Runs accepted jobs on the leader, each step recorded as an event through Raft, and watches
 * the fleet. It lives in the leader's scope: when leadership is lost the scope closes and every
 * job fiber stops; the next leader resumes unfinished jobs from the replicated state, so each
 * step checks the state first and is safe to repeat.
 */
export const makeJobScheduler = Effect.gen(function* () {
  const node = yield* RaftNode
  const http = yield* NodeHttpAddress
  const agents = yield* AgentClient
  const settings = yield* FleetSettings
  const fleet: MachineJobContext = { node, agents, settings }

  const submit = (command: StateCommand) => node.submit(command)

  const leaderWork = (term: number) =>
    Effect.gen(function* () {
      const accepted = yield* node.applied
      const at = yield* now
      // Announcing ourselves also brings our applied state up to this term's first entry.
      yield* submit({ _tag: "TakeOffice", leader: node.id, http, term, at })
      yield* monitorMachines.pipe(
        Effect.provideService(RaftNode, node),
        Effect.provideService(AgentClient, agents),
        Effect.provideService(FleetSettings, settings),
        Effect.forkScoped
      )
      const scope = yield* Effect.scope
      const lanes = new Map<string, Queue.Queue<string>>()
      const enqueue = (id: string) =>
        Effect.gen(function* () {
          const lane = laneOf(findJob(yield* node.localState, id))
          let queue = lanes.get(lane)
          if (queue === undefined) {
            const q = yield* Queue.unbounded<string>()
            lanes.set(lane, q)
            queue = q
            yield* Queue.take(q).pipe(
              Effect.flatMap((jobId) =>
                runJob(node, fleet, jobId).pipe(
                  // A refused step (busy, or a proposal lost to a leader change we have not seen
                  // yet) is retried shortly; losing leadership ends this scope altogether.
                  Effect.catchIf(
                    (e) => e._tag !== "NotLeader",
                    (e) =>
                      Effect.logWarning(`job ${jobId}: ${e._tag}; retrying`).pipe(
                        Effect.zipRight(Effect.sleep("200 millis")),
                        Effect.zipRight(Queue.offer(q, jobId))
                      )
                  )
                )
              ),
              Effect.forever,
              Effect.annotateLogs({ lane }),
              Effect.forkIn(scope)
            )
          }
          yield* Queue.offer(queue, id)
        })
      const state = yield* node.localState
      for (const job of unfinishedJobs(state)) yield* enqueue(job.id)
      // Whatever was applied since the last look, at once: one wake-up per batch, not per entry.
      const toRun = (a: AppliedEntry) =>
        a.events.flatMap((e) => (e._tag === "JobAccepted" && !endsIn(a.events, e.jobId) ? [e.jobId] : []))
      // Effect.iterate, not Effect.repeat: a repeat runs a Schedule, which reads the clock and
      // provides each iteration's metadata in a new context (two FiberRef writes per batch).
      yield* Effect.iterate(false, {
        while: (done) => !done,
        body: () =>
          Effect.flatMap(accepted.takeAll, ([entries, done]) =>
            Effect.as(Effect.forEach(Array.from(entries).flatMap(toRun), enqueue, { discard: true }), done))
      })
    }).pipe(
      Effect.scoped,
      Effect.catchAll((e: RaftError) => Effect.logDebug(`leader work ended: ${e._tag}`)),
      Effect.annotateLogs({ term, role: "leader" })
    )

  yield* node.leadership.changes.pipe(
    Stream.changesWith((a: Leadership, b: Leadership) => isLeader(a) === isLeader(b) && a.term === b.term),
    Stream.flatMap((l) => (isLeader(l) ? Stream.fromEffect(leaderWork(l.term)) : Stream.empty), { switch: true }),
    Stream.runDrain,
    Effect.forkScoped
  )
})

const runJob = (node: RaftNodeApi, fleet: MachineJobContext, jobId: string): Effect.Effect<void, RaftError> =>
  Effect.gen(function* () {
    const state = yield* node.localState
    const job = findJob(state, jobId)
    if (!job || (job.status !== "not_started" && job.status !== "ongoing")) return
    const started = yield* now
    const baseMemo = { ...memoOf(job), started_at: (memoOf(job).started_at as number | undefined) ?? started }
    if (job.status === "not_started") yield* node.submit({ _tag: "StartJob", jobId, memo: baseMemo, at: started })
    const outcome = yield* (isMachineJob(job.jobType) ? runMachineJob(fleet, job, baseMemo) : execute(node, job, baseMemo))
    const at = yield* now
    if (outcome._tag === "Handover") return
    const memo = { ...outcome.memo, ended_at: at }
    if (outcome._tag === "Done") {
      yield* node.submit({ _tag: "FinishJob", jobId, memo, at })
      yield* Metric.increment(Metric.tagged(metrics.jobs, "status", "done"))
    } else {
      yield* node.submit({ _tag: "FailJob", jobId, memo, errorCode: outcome.code, errorInfo: outcome.info, at })
      yield* Metric.increment(Metric.tagged(metrics.jobs, "status", "failed"))
    }
  }).pipe(Effect.annotateLogs({ job: jobId }))

/** A job done (or failed) by the entry that accepted it has nothing to run: no lane work for it. */
const endsIn = (events: ReadonlyArray<Event>, jobId: string): boolean =>
  events.some((e) => (e._tag === "JobDone" || e._tag === "JobFailed") && e.jobId === jobId)

// A lookup, not a scan: a leader holding tens of thousands of jobs runs each one in O(log n).
const findJob = (state: ClusterState, jobId: string): Job | undefined => Option.getOrUndefined(HashMap.get(state.jobs, jobId))

const memoOf = (job: Job): Record<string, unknown> =>
  job.memo && typeof job.memo === "object" ? (job.memo as Record<string, unknown>) : {}

const execute = (node: RaftNodeApi, job: Job, memo: Record<string, unknown>): Effect.Effect<Outcome, RaftError> => {
  if (job.jobType !== "raft_mission") {
    return Effect.succeed({
      _tag: "Failed",
      memo,
      code: jobFailedCode,
      info: `job type ${job.jobType} is accepted but not executed by this version of cluster_mgr`
    })
  }
  const task = paraText(job, "task_type")
  switch (task) {
    case "add_peer":
      return changeVoters(node, { ...memo, task_type: task, peer: paraText(job, "peer") }, (v, p) => [...v, p], "peer")
    case "remove_peer":
      return changeVoters(node, { ...memo, task_type: task, peer: paraText(job, "peer") }, (v, p) => v.filter((x) => x !== p), "peer")
    case "transfer_leader":
      return transfer(node, job.id, { ...memo, task_type: task, target_leader: paraText(job, "target_leader") })
    default:
      return Effect.succeed({ _tag: "Failed", memo, code: jobFailedCode, info: `unknown task_type ${task}` })
  }
}

/** Membership jobs are idempotent: a resumed job whose change already happened is done. */
const changeVoters = (
  node: RaftNodeApi,
  memo: Record<string, unknown>,
  change: (voters: ReadonlyArray<string>, peer: string) => ReadonlyArray<string>,
  key: string
): Effect.Effect<Outcome, RaftError> =>
  Effect.gen(function* () {
    const peer = String(memo[key])
    const status = yield* node.status
    const target = change(status.voters, peer)
    const already = target.length === status.voters.length && target.every((v) => status.voters.includes(v)) && !status.joint
    const result = already
      ? { _tag: "Right" as const, voters: status.voters }
      : yield* node.changeMembership(target).pipe(
          Effect.map((voters) => ({ _tag: "Right" as const, voters })),
          Effect.catchTags({
            OperationFailed: (e) => Effect.succeed({ _tag: "Left" as const, reason: e.reason }),
            InvalidChange: (e) => Effect.succeed({ _tag: "Left" as const, reason: e.reason }),
            Busy: (e) => Effect.succeed({ _tag: "Left" as const, reason: e.reason })
          })
        )
    const after = yield* node.status
    if (result._tag === "Left") {
      if (after.role !== "leader") return { _tag: "Handover" } as const
      return { _tag: "Failed", memo: { ...memo, voters: after.voters, leader: after.leader }, code: jobFailedCode, info: result.reason } as const
    }
    return { _tag: "Done", memo: { ...memo, voters: result.voters, leader: after.leader } } as const
  })

/**
 * Leadership transfer: the old leader cannot record success (it is no longer leader when the
 * target takes over), so the target, resuming the job as the new leader, finishes it.
 */
const transfer = (node: RaftNodeApi, jobId: string, memo: Record<string, unknown>): Effect.Effect<Outcome, RaftError> =>
  Effect.gen(function* () {
    const target = String(memo.target_leader)
    const status = yield* node.status
    if (target === node.id) return { _tag: "Done", memo: { ...memo, leader: node.id, voters: status.voters } } as const
    if (memo.handed_off_from !== undefined && memo.handed_off_from !== node.id) {
      return {
        _tag: "Failed",
        memo: { ...memo, leader: node.id, voters: status.voters },
        code: jobFailedCode,
        info: `leadership went to ${node.id} instead of ${target}`
      } as const
    }
    const at = yield* now
    const handoff = { ...memo, handed_off_from: node.id }
    yield* node.submit({ _tag: "ProgressJob", jobId, memo: handoff, at })
    const result = yield* node.transferLeadership(target).pipe(
      Effect.map(() => undefined),
      Effect.catchTags({
        OperationFailed: (e) => Effect.succeed(e.reason),
        InvalidChange: (e) => Effect.succeed(e.reason),
        Busy: (e) => Effect.succeed(e.reason)
      })
    )
    const after = yield* node.status
    if (result === undefined || after.role !== "leader") return { _tag: "Handover" } as const
    return { _tag: "Failed", memo: { ...memo, leader: after.leader, voters: after.voters }, code: jobFailedCode, info: result } as const
  })

export const layer: Layer.Layer<never, never, RaftNode | NodeHttpAddress | AgentClient | FleetSettings> =
  Layer.scopedDiscard(makeJobScheduler)
