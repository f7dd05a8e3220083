import { HashMap, Option, Schema } from "effect"
import type { Event } from "./events.js"
import { JobStatus } from "./events.js"
import { Machine } from "./machines.js"

/** One job of the job log, as Klustron's cluster_general_job_log row. */
export const Job = Schema.Struct({
  id: Schema.String,
  jobType: Schema.String,
  userName: Schema.String,
  paras: Schema.Unknown,
  status: JobStatus,
  memo: Schema.Unknown,
  errorCode: Schema.String,
  errorInfo: Schema.String,
  acceptedAt: Schema.Number,
  startedAt: Schema.NullOr(Schema.Number),
  endedAt: Schema.NullOr(Schema.Number)
})
export type Job = typeof Job.Type

/**
 * The replicated state: a pure fold of events. Jobs live in a persistent HashMap so that each
 * event costs O(log n), not a copy of the whole job log. It holds every open job and only the
 * newest `recentJobsKept` job ids beyond them (see there): a finished job older than that is
 * read from the journal, which holds its events.
 */
export interface ClusterState {
  readonly nextJobId: number
  readonly jobs: HashMap.HashMap<string, Job>
  readonly voters: ReadonlyArray<string>
  readonly learners: ReadonlyArray<string>
  readonly leader: string | null
  readonly leaderHttp: string | null
  readonly leaderTerm: number
  /** The fleet, by hostaddr. */
  readonly machines: HashMap.HashMap<string, Machine>
}

export const emptyState: ClusterState = {
  nextJobId: 1,
  jobs: HashMap.empty(),
  voters: [],
  learners: [],
  leader: null,
  leaderHttp: null,
  leaderTerm: 0,
  machines: HashMap.empty()
}

const updateMachine = (state: ClusterState, hostaddr: string, f: (m: Machine) => Machine): ClusterState => {
  const m = HashMap.get(state.machines, hostaddr)
  if (Option.isNone(m)) return state
  return { ...state, machines: HashMap.set(state.machines, hostaddr, f(m.value)) }
}

/**
 * How many of the newest job ids the state keeps when their jobs are finished. A finished job
 * never changes again and its events stay in the journal, so older finished jobs leave the
 * state: memory, snapshot images, restarts and a new member's catch-up then grow with the open
 * jobs and this window, not with the whole job log (100k jobs made a 47 MB image). Clients poll
 * a job soon after submitting it, so a status almost always comes from memory; an older one is
 * one indexed journal query (StateMachine.job). A constant, not a setting: every replica must
 * fold the same state.
 */
export const recentJobsKept = 1024

/** A job id outside the window of recent ids: leaves the state once its job is finished. */
const isOld = (state: ClusterState, jobId: string): boolean => Number(jobId) < state.nextJobId - recentJobsKept

export const isFinished = (job: Job): boolean => job.status === "done" || job.status === "failed"

/** A job id in canonical form that this state has handed out (the job may have left the state since). */
export const wasAllocated = (state: ClusterState, jobId: string): boolean =>
  /^[1-9][0-9]{0,15}$/.test(jobId) && Number(jobId) < state.nextJobId

const updateJob = (state: ClusterState, jobId: string, f: (job: Job) => Job): ClusterState => {
  const job = HashMap.get(state.jobs, jobId)
  if (Option.isNone(job)) return state
  const next = f(job.value)
  if (isFinished(next) && isOld(state, jobId)) return { ...state, jobs: HashMap.remove(state.jobs, jobId) }
  return { ...state, jobs: HashMap.set(state.jobs, jobId, next) }
}

/** The job whose id just left the window, if it is finished (an open one stays until it ends). */
const evictLeaving = (state: ClusterState): ClusterState => {
  const leaving = String(state.nextJobId - 1 - recentJobsKept)
  const job = HashMap.get(state.jobs, leaving)
  return Option.isSome(job) && isFinished(job.value) ? { ...state, jobs: HashMap.remove(state.jobs, leaving) } : state
}

export const evolve = (state: ClusterState, event: Event): ClusterState => {
  switch (event._tag) {
    case "JobAccepted":
      return evictLeaving({
        ...state,
        nextJobId: Math.max(state.nextJobId, Number(event.jobId) + 1),
        jobs: HashMap.set(state.jobs, event.jobId, {
          id: event.jobId,
          jobType: event.jobType,
          userName: event.userName,
          paras: event.paras,
          status: "not_started",
          memo: null,
          errorCode: "0",
          errorInfo: "",
          acceptedAt: event.at,
          startedAt: null,
          endedAt: null
        })
      })
    case "JobStarted":
      return updateJob(state, event.jobId, (j) => ({ ...j, status: "ongoing", memo: event.memo, startedAt: event.at }))
    case "JobProgressed":
      return updateJob(state, event.jobId, (j) => ({ ...j, memo: event.memo }))
    case "JobDone":
      return updateJob(state, event.jobId, (j) => ({ ...j, status: "done", memo: event.memo, endedAt: event.at }))
    case "JobFailed":
      return updateJob(state, event.jobId, (j) => ({
        ...j,
        status: "failed",
        memo: event.memo,
        errorCode: event.errorCode,
        errorInfo: event.errorInfo,
        endedAt: event.at
      }))
    case "MembershipChanged":
      return { ...state, voters: event.voters, learners: event.learners }
    case "LeaderElected":
      return { ...state, leader: event.leader, leaderHttp: event.http, leaderTerm: event.term }
    case "MachineAdded":
      return {
        ...state,
        machines: HashMap.set(state.machines, event.machine.hostaddr, {
          ...event.machine,
          nodeStats: "running",
          statsSince: event.at,
          createdAt: event.at,
          createdBy: event.jobId,
          instances: [],
          reportsAcked: 0,
          restartsReported: 0
        })
      }
    case "MachineUpdated":
      return updateMachine(state, event.machine.hostaddr, (m) => ({ ...m, ...event.machine }))
    case "MachineRemoved":
      return { ...state, machines: HashMap.remove(state.machines, event.hostaddr) }
    case "MachineStatsChanged":
      return updateMachine(state, event.hostaddr, (m) => ({ ...m, nodeStats: event.nodeStats, statsSince: event.at }))
    case "AgentReported":
      return updateMachine(state, event.hostaddr, (m) => ({
        ...m,
        instances: event.instances,
        reportsAcked: Math.max(m.reportsAcked, ...event.reports.map((r) => r.seq)),
        restartsReported: m.restartsReported + event.reports.filter((r) => r.event === "restarted").length
      }))
  }
}

/**
 * The state with its maps as transients, for a run of evolve steps (Effect's
 * `HashMap.beginMutation`): a set or remove then changes the nodes this run created in place
 * instead of copying its path each time, and `state` itself is untouched. Path copying was most
 * of what a replica allocated to fold its events (about 13% of a follower's allocation at
 * concurrency 16, and half of evolve's time when a restarted node folds a snapshot interval of
 * events). Only `endUpdates`' result may be kept: the states in between share the transients.
 */
export const beginUpdates = (state: ClusterState): ClusterState => ({
  ...state,
  jobs: HashMap.beginMutation(state.jobs),
  machines: HashMap.beginMutation(state.machines)
})

/** The state after a run that began with beginUpdates, with ordinary (persistent) maps again. */
export const endUpdates = (state: ClusterState): ClusterState => ({
  ...state,
  jobs: HashMap.endMutation(state.jobs),
  machines: HashMap.endMutation(state.machines)
})

/**
 * `events` folded with evolve, from `from` (which stays as it is), in one run of updates.
 * test/domain/state.test.ts holds it equal to evolve event by event.
 */
export const fold = (events: Iterable<Event>, from: ClusterState = emptyState): ClusterState => {
  let s = beginUpdates(from)
  for (const e of events) s = evolve(s, e)
  return endUpdates(s)
}

/**
 * One job's own events folded alone, from `start`: the job as it stood before them, when it began
 * earlier (in a journal's base). Only a job's own events change it, and folded alone its id is the
 * newest, so the window never drops it: this is how a job that left the state is read back.
 */
export const foldJob = (jobId: string, events: Iterable<Event>, start?: Job): Job | undefined => {
  let s: ClusterState = { ...emptyState, nextJobId: Number(jobId) + 1, jobs: start ? HashMap.make([jobId, start]) : HashMap.empty() }
  for (const e of events) s = evolve(s, e)
  return Option.getOrUndefined(HashMap.get(s.jobs, jobId))
}

/** Jobs that are not finished, oldest first: what a new leader must resume. */
export const unfinishedJobs = (state: ClusterState): Array<Job> =>
  [...HashMap.values(state.jobs)]
    .filter((j) => j.status === "not_started" || j.status === "ongoing")
    .sort((a, b) => Number(a.id) - Number(b.id))

/** The state as plain JSON (snapshots, audit). */
export const StateJson = Schema.Struct({
  nextJobId: Schema.Number,
  jobs: Schema.Array(Job),
  voters: Schema.Array(Schema.String),
  learners: Schema.Array(Schema.String),
  leader: Schema.NullOr(Schema.String),
  leaderHttp: Schema.NullOr(Schema.String),
  leaderTerm: Schema.Number,
  /** Absent in snapshots written before the fleet existed. */
  machines: Schema.optionalWith(Schema.Array(Machine), { default: () => [] })
})
export type StateJson = typeof StateJson.Type

export const toJson = (s: ClusterState): StateJson => ({
  nextJobId: s.nextJobId,
  jobs: [...HashMap.values(s.jobs)].sort((a, b) => Number(a.id) - Number(b.id)),
  voters: s.voters,
  learners: s.learners,
  leader: s.leader,
  leaderHttp: s.leaderHttp,
  leaderTerm: s.leaderTerm,
  machines: [...HashMap.values(s.machines)].sort((a, b) => (a.hostaddr < b.hostaddr ? -1 : a.hostaddr > b.hostaddr ? 1 : 0))
})

/** An image written before the window existed may hold every job: the old finished ones are dropped. */
export const fromJson = (j: StateJson): ClusterState => ({
  nextJobId: j.nextJobId,
  jobs: HashMap.fromIterable(
    j.jobs.filter((job) => !isFinished(job) || Number(job.id) >= j.nextJobId - recentJobsKept).map((job) => [job.id, job] as const)
  ),
  voters: j.voters,
  learners: j.learners,
  leader: j.leader,
  leaderHttp: j.leaderHttp,
  leaderTerm: j.leaderTerm,
  machines: HashMap.fromIterable(j.machines.map((m) => [m.hostaddr, m] as const))
})
