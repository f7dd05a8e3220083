import { Cause, Clock, Duration, Effect, Either, Exit, HashMap, Option, Runtime } from "effect"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { NodeHttpAddress } from "../actors/JobScheduler.js"
import { labelled, metrics } from "../actors/metrics.js"
import type { AppliedEntry } from "../actors/StateMachine.js"
import { type RaftError, RaftNode, type RaftNodeApi } from "../actors/RaftNode.js"
import { Transport } from "../actors/Transport.js"
import { type Command, decodeCommand } from "../domain/emit/commands.js"
import type { StateCommand } from "../domain/jobs.js"
import { decodeEmitBody, type EmitRequest } from "../domain/emit/envelope.js"
import { BadRequest, Busy, type EmitError, Internal, NotFound, Timeout, Unavailable } from "../domain/emit/errors.js"
import { accepted, type EmitReply, failure, jobStatus, syncResult } from "../domain/emit/replies.js"
import type { RaftMembership, RaftStatus } from "../domain/raft/ready.js"
import { machineReply } from "../domain/machines.js"
import { type ClusterState, type Job, wasAllocated } from "../domain/state.js"

/** Marks a request already forwarded once, so that two nodes never bounce it between them. */
export const forwardedHeader = "x-cluster-mgr-forwarded"

/** How long a request may wait for a leader (election in progress) before answering failed. */
const leaderWaitMs = 1500
const operationTimeout = Duration.seconds(10)

/** The cluster_mgr status object, as get_cluster_mgr_status and GET /status return it. */
export const statusObject = (
  s: RaftStatus,
  self: string,
  http: string,
  state: ClusterState,
  peerHttp: ReadonlyMap<string, string> = new Map()
) => ({
  node: self,
  http,
  role: s.voters.includes(self) || s.outgoing.includes(self) ? s.role : "learner",
  term: s.term,
  leader: s.leader,
  leader_http: s.leader === self ? http : s.leader !== null && state.leader === s.leader ? state.leaderHttp : null,
  commit_index: s.commitIndex,
  applied_index: s.appliedIndex,
  voters: s.voters,
  learners: [...s.learners, ...s.catchingUp],
  joint: s.joint,
  peers: s.peers.map((p) => ({ peer: p.peer, http: peerHttp.get(p.peer) ?? null, match_index: p.matchIndex, last_contact_ms: p.ticksSinceContact }))
})

const fromRaftError = (e: RaftError): EmitError => {
  switch (e._tag) {
    case "NotLeader":
      return new Unavailable({ info: "leadership changed while serving the request; retry" })
    case "Busy":
      return new Busy({ info: e.reason })
    case "InvalidChange":
      return new BadRequest({ info: e.reason })
    case "OperationFailed":
      return new Unavailable({ info: e.reason })
    case "TimedOut":
      return new Timeout({ info: e.reason })
  }
}

/**
 * What serving an Emit body takes after its first, synchronous step (`prepare`): a reply already
 * known (a bad request), a job for this leader to submit, or the general path (an Effect: reads,
 * forwarding, waiting for a leader). The first two need no fiber, which is the hot path.
 */
export type EmitStep =
  | { readonly _tag: "Reply"; readonly reply: EmitReply }
  | { readonly _tag: "Submit"; readonly job: StateCommand; readonly done: (exit: Exit.Exit<AppliedEntry, RaftError>) => EmitReply }
  | { readonly _tag: "Route"; readonly effect: Effect.Effect<EmitReply> }

/** The job types a leader accepts as jobs (the others are answered at once or not supported). */
type JobCommand = Extract<Command, { _tag: "raft_mission" | "create_machine" | "update_machine" | "delete_machine" | "control_instance" }>

const isJobCommand = (c: Command): c is JobCommand =>
  c._tag === "raft_mission" || c._tag === "create_machine" || c._tag === "update_machine" || c._tag === "delete_machine" ||
  c._tag === "control_instance"

/**
 * Serves one Emit body on this node: decode and validate, then answer locally (status),
 * as the leader (jobs, get_status) or by forwarding to the leader.
 */
export const makeEmit = Effect.gen(function* () {
  const node = yield* RaftNode
  const http = yield* NodeHttpAddress
  const client = yield* HttpClient.HttpClient
  // Optional, so that an embedder's router without a transport of its own still builds.
  const transport = Option.getOrUndefined(yield* Effect.serviceOption(Transport))
  const runCallback = Runtime.runCallback(yield* Effect.runtime<never>())

  const localStatus = Effect.gen(function* () {
    const s = yield* node.status
    const state = yield* node.localState
    return statusObject(s, node.id, http, state, transport?.peerHttp())
  })

  const asLeader = (request: EmitRequest, command: Command): Effect.Effect<EmitReply, EmitError> => {
    switch (command._tag) {
      case "get_status":
        return node.read.pipe(
          Effect.mapError(fromRaftError),
          Effect.flatMap((state) =>
            Effect.flatMap(node.job(state, command.job_id), (job) =>
              Option.isSome(job) ? Effect.succeed(statusReply(job.value)) : missingJobReply(node, state, command.job_id)))
        )
      case "raft_mission":
      case "create_machine":
      case "update_machine":
      case "delete_machine":
      case "control_instance":
        return Effect.gen(function* () {
          const job = jobToSubmit(yield* node.status, yield* node.localState, request, command, yield* Clock.currentTimeMillis)
          if (Either.isLeft(job)) return yield* job.left
          return submittedReply(yield* Effect.exit(node.submit(job.right)))
        })
      case "get_machines":
        return node.read.pipe(
          Effect.mapError(fromRaftError),
          Effect.flatMap((state) => machinesReply(state, command.hostaddr))
        )
      default:
        return Effect.fail(
          new BadRequest({ info: `job_type ${command._tag} is not supported by this version of cluster_mgr` })
        )
    }
  }

  const forward = (body: string, leaderHttp: string): Effect.Effect<EmitReply, EmitError> =>
    HttpClientRequest.post(`http://${leaderHttp}/HttpService/Emit`).pipe(
      HttpClientRequest.setHeader(forwardedHeader, "1"),
      HttpClientRequest.bodyText(body, "application/json"),
      client.execute,
      Effect.flatMap((res) => res.json),
      Effect.map((json) => json as EmitReply),
      Effect.scoped,
      Effect.timeout(operationTimeout),
      Effect.mapError(() => new Unavailable({ info: `forwarding to the leader at ${leaderHttp} failed; retry` }))
    )

  /** Waits briefly for a leader to be known (an election may be under way). */
  const awaitLeader = Effect.gen(function* () {
    const deadline = (yield* Clock.currentTimeMillis) + leaderWaitMs
    while (true) {
      const s = yield* node.status
      if (s.role === "leader") return Option.some({ self: true, http })
      const state = yield* node.localState
      if (s.leader !== null && state.leader === s.leader && state.leaderHttp) {
        return Option.some({ self: false, http: state.leaderHttp })
      }
      if ((yield* Clock.currentTimeMillis) >= deadline) return Option.none()
      yield* Effect.sleep(Duration.millis(20))
    }
  })

  const route = (body: string, forwarded: boolean, request: EmitRequest, command: Command) =>
    Effect.gen(function* () {
      if (command._tag === "get_cluster_mgr_status") return syncResult(yield* localStatus)
      const leader = yield* awaitLeader
      if (Option.isNone(leader)) {
        return yield* Effect.fail(new Unavailable({ info: "no cluster_mgr leader is known at the moment; retry shortly" }))
      }
      // The Raft actor bounds proposals and reads (TimedOut): no timer or fiber per request here.
      if (leader.value.self) return yield* asLeader(request, command)
      if (forwarded) return yield* Effect.fail(new Unavailable({ info: "leadership is changing; retry" }))
      return yield* forward(body, leader.value.http)
    })

  /**
   * The first step, synchronous: decode; then a job for this node, leading, is validated against
   * its state and ready to submit. Everything else takes the general path.
   */
  const prepare = (body: string, forwarded: boolean): EmitStep => {
    const request = decodeEmitBody(body)
    if (Either.isLeft(request)) return { _tag: "Reply", reply: failure(request.left) }
    const command = decodeCommand(request.right)
    if (Either.isLeft(command)) return { _tag: "Reply", reply: failure(command.left) }
    const jobType = request.right.job_type
    const counted = (reply: EmitReply): EmitReply => {
      countRequest(jobType, reply.status)
      return reply
    }
    if (isJobCommand(command.right)) {
      const membership = node.membershipNow()
      if (membership.role === "leader") {
        const job = jobToSubmit(membership, node.stateNow(), request.right, command.right, Date.now())
        if (Either.isLeft(job)) return { _tag: "Reply", reply: counted(failure(job.left)) }
        return { _tag: "Submit", job: job.right, done: (exit) => counted(submittedReply(exit)) }
      }
    }
    const effect = route(body, forwarded, request.right, command.right).pipe(
      Effect.catchAll((e) => Effect.succeed(failure(e))),
      Effect.catchAllDefect((d) =>
        Effect.logError("Emit failed", d).pipe(Effect.as(failure(new Internal({ info: "internal error" }))))
      ),
      Effect.map(counted)
    )
    return { _tag: "Route", effect }
  }

  /** Serves a body as an Effect (the router, tests). */
  const handle = (body: string, forwarded: boolean): Effect.Effect<EmitReply> =>
    Effect.suspend(() => {
      const step = prepare(body, forwarded)
      switch (step._tag) {
        case "Reply":
          return Effect.succeed(step.reply)
        case "Submit":
          return Effect.async<EmitReply>((resume) => node.submitNow(step.job, (exit) => resume(Effect.succeed(step.done(exit)))))
        case "Route":
          return step.effect
      }
    })

  /**
   * Serves a body outside any fiber and calls `respond` once with the reply: the HTTP hot path.
   * Only the general path runs a fiber; a defect there answers 70001-internal, as `handle` does.
   */
  const serve = (body: string, forwarded: boolean, respond: (reply: EmitReply) => void): void => {
    const step = prepare(body, forwarded)
    switch (step._tag) {
      case "Reply":
        return respond(step.reply)
      case "Submit":
        return node.submitNow(step.job, (exit) => respond(step.done(exit)))
      case "Route":
        runCallback(step.effect, {
          onExit: (exit) => respond(Exit.isSuccess(exit) ? exit.value : failure(new Internal({ info: "internal error" })))
        })
        return
    }
  }

  return { handle, serve, localStatus }
})

/** One counter per (job_type, status), its labels resolved once (see `labelled`). */
const requestCounters = new Map<string, (n: number) => void>()
const countRequest = (jobType: string, status: string): void => {
  const key = `${jobType}\u0000${status}`
  let count = requestCounters.get(key)
  if (count === undefined) {
    count = labelled(metrics.requests, { job_type: jobType, status })
    requestCounters.set(key, count)
  }
  count(1)
}
const countAccepted = labelled(metrics.jobs, { status: "accepted" })

/**
 * A job this leader does not hold: never allocated (70003); or finished, out of the recent
 * window and not in its journal, which it may still be copying from the other members after
 * joining by snapshot (HistoryBackfill: 70002, it exists and will be answered shortly), or which
 * its journal retention dropped (70003).
 */
const missingJobReply = (node: RaftNodeApi, state: ClusterState, jobId: string): Effect.Effect<EmitReply> => {
  if (!wasAllocated(state, jobId)) return Effect.succeed(failure(new NotFound({ info: `no job with job_id ${jobId}` })))
  return Effect.map(node.historyIncomplete, (copying) =>
    failure(
      copying
        ? new Unavailable({
          info: `job ${jobId} ended before this leader joined, and it is still copying those jobs' events from the other members (cluster_mgr_journal_history_missing shows how far); retry shortly`
        })
        : new NotFound({
          info: `job ${jobId} ended long ago and this leader's journal no longer holds it (journal retention); another member's journal may (cluster_mgr audit --data DIR job ${jobId})`
        })
    ))
}

/** A submitted job's reply: accepted under its id, or why it was not. */
const submittedReply = (exit: Exit.Exit<AppliedEntry, RaftError>): EmitReply => {
  if (Exit.isFailure(exit)) {
    const error = Cause.failureOption(exit.cause)
    return failure(Option.isSome(error) ? fromRaftError(error.value) : new Internal({ info: "internal error" }))
  }
  const event = exit.value.events.find((e) => e._tag === "JobAccepted")
  if (!event || event._tag !== "JobAccepted") return failure(new Internal({ info: "the job was not recorded" }))
  countAccepted(1)
  return accepted(event.jobId)
}

/**
 * The command that submits `command` as a job, once checked against the leader's view: raft
 * missions against its membership, machine jobs against its machines. A transfer to the leader
 * itself is done at acceptance: one entry, no job to run.
 */
const jobToSubmit = (
  membership: RaftMembership,
  state: ClusterState,
  request: EmitRequest,
  command: JobCommand,
  at: number
): Either.Either<StateCommand, EmitError> => {
  const invalid = command._tag === "raft_mission" ? raftMissionError(membership, command) : machineJobError(state, command)
  if (invalid) return Either.left(invalid)
  const doneMemo = command._tag === "raft_mission" && command.task_type === "transfer_leader" && command.target_leader === membership.id
    ? { task_type: command.task_type, target_leader: command.target_leader, started_at: at, ended_at: at, leader: membership.id, voters: membership.voters }
    : undefined
  return Either.right({
    _tag: "SubmitJob",
    jobType: request.job_type,
    userName: request.user_name ?? "",
    paras: request.paras,
    at,
    ...(doneMemo === undefined ? {} : { doneMemo })
  })
}

const statusReply = (j: Job): EmitReply => {
  const error = j.status === "failed" ? { code: j.errorCode as "70007", info: j.errorInfo } : undefined
  return jobStatus(j.id, j.status, j.memo ?? null, error)
}

const machinesReply = (state: ClusterState, hostaddr: string | undefined): Effect.Effect<EmitReply, EmitError> => {
  if (hostaddr !== undefined) {
    const m = HashMap.get(state.machines, hostaddr)
    if (Option.isNone(m)) return Effect.fail(new NotFound({ info: `no machine with hostaddr ${hostaddr}` }))
    return Effect.succeed(syncResult({ machines: [machineReply(m.value)] }))
  }
  const all = [...HashMap.values(state.machines)].sort((a, b) => (a.hostaddr < b.hostaddr ? -1 : a.hostaddr > b.hostaddr ? 1 : 0))
  return Effect.succeed(syncResult({ machines: all.map(machineReply) }))
}

/** Why the leader's state refuses a machine job, if it does. */
const machineJobError = (
  state: ClusterState,
  command: Extract<Command, { _tag: "create_machine" | "update_machine" | "delete_machine" | "control_instance" }>
): EmitError | undefined => {
  const m = HashMap.get(state.machines, command.hostaddr)
  if (command._tag === "create_machine") {
    return Option.isSome(m)
      ? new BadRequest({ info: `paras.hostaddr: machine ${command.hostaddr} already exists (use update_machine to change it)` })
      : undefined
  }
  if (Option.isNone(m)) return new NotFound({ info: `no machine with hostaddr ${command.hostaddr}` })
  if (command._tag === "delete_machine" && m.value.machineType !== command.machine_type) {
    return new BadRequest({ info: `paras.machine_type: machine ${command.hostaddr} is a ${m.value.machineType} machine, not ${command.machine_type}` })
  }
  return undefined
}

/** Why the group's membership refuses a raft mission, if it does. */
const raftMissionError = (s: RaftMembership, command: Extract<Command, { _tag: "raft_mission" }>): EmitError | undefined => {
  const inGroup = (p: string) => s.voters.includes(p) || s.outgoing.includes(p)
  switch (command.task_type) {
    case "add_peer":
      return inGroup(command.peer) ? new BadRequest({ info: `paras.peer ${command.peer} is already in the group` }) : undefined
    case "remove_peer":
      if (!inGroup(command.peer)) return new BadRequest({ info: `paras.peer ${command.peer} is not in the group` })
      if (s.voters.length === 1) return new BadRequest({ info: "paras.peer is the last member; it cannot be removed" })
      return undefined
    case "transfer_leader":
      return s.voters.includes(command.target_leader)
        ? undefined
        : new BadRequest({ info: `paras.target_leader ${command.target_leader} is not a voter of the group` })
  }
}
