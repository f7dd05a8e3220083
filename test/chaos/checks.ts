import type { StatusSample } from "./cluster.js"
import type { RecordedOp } from "./history.js"
import { describeOp } from "./history.js"
import { jobsOf, type JournalDump } from "./journal.js"
import {
  check,
  type CheckResult,
  isRead,
  type JobInput,
  jobModel,
  type JobOp,
  type JobOutput,
  type JobStatus,
  type Model,
  narrowRegistry,
  registryModel,
  shrink
} from "./linearizability.js"

/**
 * The checkers over a run: the history against the job registry's models (linearizability),
 * acknowledged jobs against every journal (nothing lost, nothing invented, ids unique and
 * increasing in real-time order), leaders per term (node logs and status samples).
 */

export interface Finding {
  readonly checker: string
  readonly message: string
  /** Operations that show it (the smallest window for a linearizability failure). */
  readonly ops?: ReadonlyArray<string>
  /** For a linearizability failure: the window's bounds on the run's clock (ms). */
  readonly window?: readonly [number, number]
}

// ------------------------------------------------------------------- resolving jobs to operations

export interface Resolution {
  /** Linearizability operations (submits with their job ids, reads with answers). */
  readonly jobOps: Array<JobOp>
  readonly findings: Array<Finding>
  /** job id -> user_name, from the union of every journal. */
  readonly jobs: Map<string, string>
}

/**
 * Names the job behind every submit from the journals (each submit carries its own user_name):
 * an unknown outcome becomes "took effect as job X" or "never took effect". Checks that every
 * accepted id is the job the journal records for that submit, that no submit answered with a
 * definite failure took effect, and that no job exists that no submit asked for.
 */
export const resolve = (history: ReadonlyArray<RecordedOp>, dumps: ReadonlyArray<JournalDump>, retention = false): Resolution => {
  const findings: Array<Finding> = []
  const jobs = new Map<string, string>()
  for (const d of dumps) {
    for (const [id, user] of jobsOf(d)) {
      const seen = jobs.get(id)
      if (seen !== undefined && seen !== user) {
        findings.push({ checker: "journal", message: `job ${id} belongs to ${seen} on one node and to ${user} on ${d.node}` })
      }
      jobs.set(id, user)
    }
  }
  const byUser = new Map<string, Array<string>>()
  for (const [id, user] of jobs) byUser.set(user, [...(byUser.get(user) ?? []), id])
  // With journal retention every node forgets old finished jobs: ids below the lowest any node
  // still knows are pruned everywhere, and ids are allocated without gaps from 1.
  const lowestKnown = lowestId(jobs.keys())
  const jobOps: Array<JobOp> = []
  const claimed = new Set<string>()
  for (const op of history) {
    if (op.kind !== "submit") continue
    const ids = byUser.get(op.input.userName!) ?? []
    if (ids.length > 1) {
      findings.push({ checker: "unique", message: `one submit created ${ids.length} jobs (${ids.join(", ")}): applied more than once`, ops: [describeOp(op)] })
    }
    // An acknowledged job pruned everywhere is the one its reply named.
    const pruned = op.outcome === "ok" && ids.length === 0 && retention && Number(op.jobId) < lowestKnown
    const journalId = pruned ? op.jobId : ids[0]
    if (op.outcome === "ok") {
      if (journalId === undefined) {
        findings.push({ checker: "lost", message: `acknowledged job ${op.jobId} is in no journal: lost`, ops: [describeOp(op)] })
        continue
      }
      if (journalId !== op.jobId) {
        findings.push({ checker: "unique", message: `the reply named job ${op.jobId}, the journals record this submit as job ${journalId}`, ops: [describeOp(op)] })
      }
    } else if (journalId !== undefined) {
      if (op.outcome === "fail") {
        findings.push({ checker: "phantom", message: `a submit answered with a definite failure took effect as job ${journalId}`, ops: [describeOp(op)] })
      }
      op.jobId = journalId
    }
    if (journalId === undefined) continue // never took effect (an unknown outcome that did not happen)
    claimed.add(journalId)
    jobOps.push({
      id: op.id,
      process: op.process,
      call: op.call,
      ret: op.outcome === "ok" ? op.ret : Infinity,
      input: { f: "submit", id: journalId },
      output: op.outcome === "ok" ? { f: "submit" } : undefined
    })
  }
  let synthetic = -1
  /** A submit of unknown origin and outcome that created job `id`. */
  const unknownSubmit = (id: string): JobOp => ({ id: synthetic--, process: -1, call: 0, ret: Infinity, input: { f: "submit", id }, output: undefined })
  for (const [id, user] of jobs) {
    if (claimed.has(id)) continue
    findings.push({ checker: "phantom", message: `job ${id} (user_name ${JSON.stringify(user)}) was created by no recorded submit` })
    jobOps.push(unknownSubmit(id))
  }
  if (retention) {
    // Pruned ids no acknowledged submit names: some submit of unknown outcome took effect as each.
    const acked = history.filter((o) => o.kind === "submit" && o.outcome === "ok").map((o) => Number(o.jobId))
    const top = Number.isFinite(lowestKnown) ? lowestKnown - 1 : Math.max(0, ...acked)
    for (let id = 1; id <= top; id++) {
      if (!claimed.has(String(id))) jobOps.push(unknownSubmit(String(id)))
    }
  }
  for (const op of history) {
    if (op.kind !== "read" || op.outcome !== "ok") continue
    const output: JobOutput = op.found
      ? { f: "read", found: true, status: op.jobStatus as JobStatus }
      : retention && op.forgotten
      ? { f: "read", found: true, status: "forgotten" }
      : { f: "read", found: false }
    jobOps.push({ id: op.id, process: op.process, call: op.call, ret: op.ret, input: { f: "read", id: op.input.jobId! }, output })
  }
  jobOps.sort((a, b) => a.call - b.call || a.id - b.id)
  return { jobOps, findings, jobs }
}

// ---------------------------------------------------------------------------- linearizability

export interface LinearizabilityReport {
  readonly model: string
  readonly outcome: CheckResult<JobInput, JobOutput>["outcome"]
  readonly elapsedMs: number
  readonly partitions: number
  readonly findings: Array<Finding>
}

const describeJobOp = (op: JobOp, byId: Map<number, RecordedOp>): string => {
  const rec = byId.get(op.id)
  if (rec !== undefined) return describeOp(rec)
  return `#synthetic submit of job ${op.input.id} by nobody recorded [0..inf]`
}

/** Runs a model over the resolved history; each illegal partition is shrunk to its smallest window. */
export const checkLinearizable = <S>(
  model: Model<S, JobInput, JobOutput>,
  ops: ReadonlyArray<JobOp>,
  history: ReadonlyArray<RecordedOp>,
  timeoutMs: number
): LinearizabilityReport => {
  const result = check(model, ops, timeoutMs)
  const byId = new Map(history.map((o) => [o.id, o]))
  const findings: Array<Finding> = []
  for (const p of result.partitions) {
    if (p.outcome !== "illegal") continue
    let witness = shrink(model, p.ops, isRead, Math.min(15_000, timeoutMs))
    if (model.name === "registry") witness = narrowRegistry(witness as Array<JobOp>)?.ops ?? witness
    const from = Math.min(...witness.map((o) => o.call))
    const to = Math.max(...witness.map((o) => (Number.isFinite(o.ret) ? o.ret : o.call)))
    findings.push({
      checker: `linearizability/${model.name}`,
      message:
        `${model.name === "job" ? `job ${p.key}: ` : ""}not linearizable; smallest window found: ${witness.length} operations ` +
        `between ${from.toFixed(0)} and ${to.toFixed(0)} ms (of ${p.ops.length} in the partition; longest linearizable prefix ${p.longestPrefix.length} ops, ` +
        `stuck at: ${p.stuck.map((o) => `#${o.id}`).join(" ")})`,
      ops: witness.map((o) => describeJobOp(o, byId)),
      window: [from, to]
    })
    if (findings.length >= 5) break
  }
  if (result.outcome === "unknown") {
    findings.push({ checker: `linearizability/${model.name}`, message: `search did not finish within ${timeoutMs} ms: unknown` })
  }
  return { model: model.name, outcome: result.outcome, elapsedMs: result.elapsedMs, partitions: result.partitions.length, findings }
}

export const checkJobs = (ops: ReadonlyArray<JobOp>, history: ReadonlyArray<RecordedOp>, timeoutMs: number) =>
  checkLinearizable(jobModel, ops, history, timeoutMs)
export const checkRegistry = (ops: ReadonlyArray<JobOp>, history: ReadonlyArray<RecordedOp>, timeoutMs: number) =>
  checkLinearizable(registryModel, ops, history, timeoutMs)

// ------------------------------------------------------------------------- ids and durability

/**
 * Accepted ids are unique, and increase with real time: a submit that returned before another
 * was invoked got the smaller id (also for unknown outcomes the journal resolved: they may have
 * taken effect late, so only the ordering after an accepted reply is required).
 */
export const checkIds = (history: ReadonlyArray<RecordedOp>): Array<Finding> => {
  const findings: Array<Finding> = []
  const accepted = history.filter((o) => o.kind === "submit" && o.outcome === "ok")
  const seen = new Map<string, RecordedOp>()
  for (const op of accepted) {
    const other = seen.get(op.jobId!)
    if (other !== undefined) findings.push({ checker: "unique", message: `job id ${op.jobId} accepted twice`, ops: [describeOp(other), describeOp(op)] })
    seen.set(op.jobId!, op)
  }
  const withId = history.filter((o) => o.kind === "submit" && o.jobId !== undefined)
  const byRet = [...accepted].sort((a, b) => a.ret - b.ret)
  const byCall = [...withId].sort((a, b) => a.call - b.call)
  let i = 0
  let maxBefore: RecordedOp | undefined
  for (const op of byCall) {
    while (i < byRet.length && byRet[i].ret < op.call) {
      if (maxBefore === undefined || Number(byRet[i].jobId) > Number(maxBefore.jobId)) maxBefore = byRet[i]
      i++
    }
    if (maxBefore !== undefined && Number(maxBefore.jobId) >= Number(op.jobId)) {
      findings.push({
        checker: "order",
        message: `job ${op.jobId} was submitted after job ${maxBefore.jobId} had been accepted, but got a smaller (or equal) id`,
        ops: [describeOp(maxBefore), describeOp(op)]
      })
      if (findings.length > 10) break
    }
  }
  return findings
}

/**
 * Every accepted job is on every node (journal rows or the snapshot base it started from); with
 * journal retention, those older than the oldest job a node still knows may be pruned there.
 */
export const checkDurable = (history: ReadonlyArray<RecordedOp>, dumps: ReadonlyArray<JournalDump>, retention = false): Array<Finding> => {
  const findings: Array<Finding> = []
  const accepted = history.filter((o) => o.kind === "submit" && o.outcome === "ok")
  for (const d of dumps) {
    const jobs = jobsOf(d)
    const pruned = retention ? lowestId(jobs.keys()) : 0
    const missing = accepted.filter((o) => !jobs.has(o.jobId!) && Number(o.jobId) >= pruned)
    if (missing.length > 0) {
      findings.push({
        checker: "lost",
        message: `${d.node}: ${missing.length} acknowledged job(s) missing from its journal: ${missing.slice(0, 10).map((o) => o.jobId).join(", ")}`,
        ops: missing.slice(0, 5).map(describeOp)
      })
    }
  }
  return findings
}

/** Final reads after healing (actor "final"): every acknowledged job must be found (or, with journal retention, found forgotten). */
export const checkFinalReads = (history: ReadonlyArray<RecordedOp>, retention = false): Array<Finding> => {
  const accepted = new Set(history.filter((o) => o.kind === "submit" && o.outcome === "ok").map((o) => o.jobId!))
  const finals = history.filter((o) => o.actor === "final")
  const findings: Array<Finding> = []
  const notFound = finals.filter((o) => o.outcome === "ok" && o.found === false && !(retention && o.forgotten) && accepted.has(o.input.jobId!))
  if (notFound.length > 0) {
    findings.push({ checker: "lost", message: `${notFound.length} acknowledged job(s) not found by get_status after healing`, ops: notFound.slice(0, 5).map(describeOp) })
  }
  const answered = new Set(finals.filter((o) => o.outcome === "ok").map((o) => o.input.jobId!))
  const unanswered = finals.filter((o) => !answered.has(o.input.jobId!))
  if (unanswered.length > 0) {
    findings.push({
      checker: "final-reads",
      message: `${new Set(unanswered.map((o) => o.input.jobId)).size} job id(s) got no answer from get_status after healing (retried 15 s each, 120 s in all)`,
      ops: unanswered.slice(-5).map(describeOp)
    })
  }
  return findings
}

// ---------------------------------------------------------------------------------- leaders

export interface LeaderClaim {
  readonly term: number
  readonly node: string
  readonly source: string
}

/** `role leader, term N` lines of a node's logfmt log. */
export const leaderClaimsFromLog = (text: string, fallbackNode: string): Array<LeaderClaim> => {
  const claims: Array<LeaderClaim> = []
  for (const line of text.split("\n")) {
    const m = /message="role leader, term (\d+)/.exec(line)
    if (m === null) continue
    const node = /\bnode=(\S+)/.exec(line)?.[1] ?? fallbackNode
    claims.push({ term: Number(m[1]), node, source: `log ${line.slice(0, 40)}` })
  }
  return claims
}

export const leaderClaimsFromSamples = (samples: ReadonlyArray<StatusSample>): Array<LeaderClaim> =>
  samples.filter((s) => s.role === "leader").map((s) => ({ term: s.term, node: s.node, source: `status at ${s.t.toFixed(0)} ms` }))

export const checkLeaders = (claims: ReadonlyArray<LeaderClaim>): { findings: Array<Finding>; terms: number } => {
  const byTerm = new Map<number, Map<string, string>>()
  for (const c of claims) {
    let m = byTerm.get(c.term)
    if (m === undefined) byTerm.set(c.term, (m = new Map()))
    if (!m.has(c.node)) m.set(c.node, c.source)
  }
  const findings: Array<Finding> = []
  for (const [term, leaders] of byTerm) {
    if (leaders.size > 1) {
      findings.push({ checker: "leaders", message: `term ${term} has ${leaders.size} leaders: ${[...leaders].map(([n, s]) => `${n} (${s})`).join("; ")}` })
    }
  }
  return { findings, terms: byTerm.size }
}

/** The lowest numeric job id among `ids`, Infinity when there are none. */
const lowestId = (ids: Iterable<string>): number => {
  let low = Number.POSITIVE_INFINITY
  for (const id of ids) low = Math.min(low, Number(id))
  return low
}
