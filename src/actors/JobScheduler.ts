import { Clock, Context, Effect, Layer, Metric, PubSub, Queue, Stream } from "effect"
import type { StateCommand } from "../domain/jobs.js"
import { type ClusterState, type Job, unfinishedJobs } from "../domain/state.js"
import { metrics } from "./metrics.js"
import { isLeader, type Leadership, type RaftError, RaftNode, type RaftNodeApi } from "./RaftNode.js"

/** Where this node serves HTTP: a new leader announces it so followers can forward to it. */
export class NodeHttpAddress extends Context.Tag("cluster_mgr/NodeHttpAddress")<NodeHttpAddress, string>() {}

/** The outcome of one run of a job on this leader. */
type Outcome =
  | { readonly _tag: "Done"; readonly memo: Record<string, unknown> }
  | { readonly _tag: "Failed"; readonly memo: Record<string, unknown>; readonly code: string; readonly info: string }
  /** Leadership moved on: the next leader resumes the job. */
  | { readonly _tag: "Handover" }

const jobFailedCode = "70007"

const now = Clock.currentTimeMillis

const paraText = (job: Job, key: string): string => {
  const paras = job.paras as Record<string, unknown> | null
  const v = paras?.[key]
  return typeof v === "string" ? v : String(v ?? "")
}

/**
 * Runs accepted jobs on the leader, one at a time in id order, each step recorded as an event
 * through Raft. It lives in the leader's scope: when leadership is lost the scope closes and
 * every job fiber stops; the next leader resumes unfinished jobs from the replicated state, so
 * each step checks the state first and is safe to repeat.
 */
export const makeJobScheduler = Effect.gen(function* () {
  const node = yield* RaftNode
  const http = yield* NodeHttpAddress

  const submit = (command: StateCommand) => node.submit(command)

  const leaderWork = (term: number) =>
    Effect.gen(function* () {
      const accepted = yield* PubSub.subscribe(node.applied)
      const at = yield* now
      // Announcing ourselves also brings our applied state up to this term's first entry.
      yield* submit({ _tag: "TakeOffice", leader: node.id, http, term, at })
      const queue = yield* Queue.unbounded<string>()
      const state = yield* node.localState
      for (const job of unfinishedJobs(state)) yield* Queue.offer(queue, job.id)
      yield* Queue.take(accepted).pipe(
        Effect.flatMap((a) =>
          Effect.forEach(a.events, (e) => (e._tag === "JobAccepted" ? Queue.offer(queue, e.jobId) : Effect.void))
        ),
        Effect.forever,
        Effect.forkScoped
      )
      yield* Queue.take(queue).pipe(
        Effect.flatMap((id) =>
          runJob(node, id).pipe(
            // A refused step (busy, or a proposal lost to a leader change we have not seen yet)
            // is retried shortly; losing leadership ends this scope altogether.
            Effect.catchIf(
              (e) => e._tag !== "NotLeader",
              (e) =>
                Effect.logWarning(`job ${id}: ${e._tag}; retrying`).pipe(
                  Effect.zipRight(Effect.sleep("200 millis")),
                  Effect.zipRight(Queue.offer(queue, id))
                )
            )
          )
        ),
        Effect.forever
      )
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

const runJob = (node: RaftNodeApi, jobId: string): Effect.Effect<void, RaftError> =>
  Effect.gen(function* () {
    const state = yield* node.localState
    const job = findJob(state, jobId)
    if (!job || (job.status !== "not_started" && job.status !== "ongoing")) return
    const started = yield* now
    const baseMemo = { ...memoOf(job), started_at: (memoOf(job).started_at as number | undefined) ?? started }
    if (job.status === "not_started") yield* node.submit({ _tag: "StartJob", jobId, memo: baseMemo, at: started })
    const outcome = yield* execute(node, job, baseMemo)
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

const findJob = (state: ClusterState, jobId: string): Job | undefined => {
  for (const [id, job] of state.jobs) if (id === jobId) return job
  return undefined
}

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

export const layer = Layer.scopedDiscard(makeJobScheduler)
