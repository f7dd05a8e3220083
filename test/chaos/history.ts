import { type HttpReply, emit, envelope, getStatus, raftMission } from "../integration/harness.js"

/**
 * The recorded history: every client (and nemesis) operation with its call and return times on
 * the run's clock, the node it went to, what it sent and what came back. The outcome follows
 * Jepsen: "ok" (it happened, with this result), "fail" (it certainly did not happen), "info"
 * (unknown: a timeout, a reset connection, an error that does not say whether it happened).
 */

export type OpKind = "submit" | "read"
export type OpOutcome = "ok" | "fail" | "info"

export interface RecordedOp {
  readonly id: number
  /** Jepsen's process: a client gets a new one after an "info" (its old op may still be running). */
  readonly process: number
  /** "client", "nemesis" (transfer_leader, add/remove_peer), "final" (reads after healing), "probe". */
  readonly actor: string
  readonly kind: OpKind
  readonly node: string
  readonly call: number
  ret: number
  /** For a submit: the task and its paras; for a read: the job id asked for. */
  readonly input: { readonly jobId?: string; readonly userName?: string; readonly task?: string; readonly paras?: Record<string, string> }
  outcome: OpOutcome
  /** Accepted submit: the job id; read: found or not, and the status. */
  jobId?: string
  found?: boolean
  /** A read answered 70003 for a job that existed and ended, its events pruned (journal retention). */
  forgotten?: boolean
  jobStatus?: string
  errorCode?: string
  /** The reply text or the error, shortened. */
  detail: string
}

/** Emit error codes of a submit that certainly did not create a job (validation, busy, internal: "not applied"). */
export const definiteSubmitFailures = new Set(["70001", "70005", "70006"])

const short = (s: string, n = 300): string => (s.length > n ? `${s.slice(0, n)}...(${s.length} chars)` : s)

export class Recorder {
  readonly ops: Array<RecordedOp> = []
  private nextProcess = 0

  constructor(readonly now: () => number, readonly runTag: string) {}

  newProcess(): number {
    return this.nextProcess++
  }

  /** A user_name no other operation uses: the journal then names the operation behind every job. */
  userName(opId: number): string {
    return `chaos-${this.runTag}-${opId}`
  }

  /** Submits a raft_mission job at `node` and records it. */
  async submit(
    process: number,
    actor: string,
    node: { name: string; http: string },
    task: string,
    paras: Record<string, string>,
    timeoutMs: number
  ): Promise<RecordedOp> {
    const id = this.ops.length
    const userName = this.userName(id)
    const op: RecordedOp = {
      id,
      process,
      actor,
      kind: "submit",
      node: node.name,
      call: this.now(),
      ret: Infinity,
      input: { userName, task, paras },
      outcome: "info",
      detail: ""
    }
    this.ops.push(op)
    const body = { ...raftMission(task, paras), user_name: userName }
    try {
      const r = await emit(node.http, body, timeoutMs)
      op.ret = this.now()
      op.detail = short(r.text)
      const j = r.json
      if (r.httpStatus === 200 && j?.status === "accept" && typeof j.job_id === "string") {
        op.outcome = "ok"
        op.jobId = j.job_id
      } else if (r.httpStatus === 200 && j?.status === "failed") {
        op.errorCode = String(j.error_code)
        op.outcome = definiteSubmitFailures.has(op.errorCode) ? "fail" : "info"
      } else {
        op.outcome = "info"
      }
    } catch (e) {
      settleError(op, e, this.now())
    }
    return op
  }

  /** get_status of `jobId` at `node`, recorded. */
  async read(process: number, actor: string, node: { name: string; http: string }, jobId: string, timeoutMs: number): Promise<RecordedOp> {
    const op: RecordedOp = {
      id: this.ops.length,
      process,
      actor,
      kind: "read",
      node: node.name,
      call: this.now(),
      ret: Infinity,
      input: { jobId },
      outcome: "info",
      detail: ""
    }
    this.ops.push(op)
    try {
      const r: HttpReply = await emit(node.http, getStatus(jobId), timeoutMs)
      op.ret = this.now()
      op.detail = short(r.text)
      const j = r.json
      if (r.httpStatus === 200 && j?.job_id === jobId && typeof j.status === "string") {
        op.outcome = "ok"
        op.found = true
        op.jobStatus = j.status
      } else if (r.httpStatus === 200 && j?.status === "failed" && j?.error_code === "70003") {
        op.outcome = "ok"
        op.found = false
        op.forgotten = typeof j.error_info === "string" && j.error_info.includes("ended long ago")
        op.errorCode = "70003"
      } else {
        op.errorCode = j?.error_code
        op.outcome = "fail" // a read that answered nothing about the job: no information, no effect
      }
    } catch (e) {
      settleError(op, e, this.now())
      if (op.outcome === "info") op.outcome = "fail" // an unanswered read has no effect either
    }
    return op
  }
}

/** A refused connection never reached the node: the op certainly did not happen. Anything else is unknown. */
const settleError = (op: RecordedOp, e: unknown, now: number): void => {
  const code = (e as NodeJS.ErrnoException).code
  op.detail = short(`${code ?? ""} ${(e as Error).message ?? String(e)}`.trim())
  if (code === "ECONNREFUSED") {
    op.ret = now
    op.outcome = "fail"
  } else {
    op.ret = Infinity
    op.outcome = "info"
  }
}

export const describeOp = (op: RecordedOp): string => {
  const ret = Number.isFinite(op.ret) ? op.ret.toFixed(0) : "inf"
  const what =
    op.kind === "submit"
      ? `submit ${op.input.task}(${Object.values(op.input.paras ?? {}).join(",")}) user=${op.input.userName}`
      : `get_status(${op.input.jobId})`
  const result =
    op.outcome === "ok"
      ? op.kind === "submit"
        ? `accept id=${op.jobId}`
        : op.found
          ? `found ${op.jobStatus}`
          : "not-found"
      : `${op.outcome}${op.errorCode ? ` ${op.errorCode}` : ""}${op.jobId ? ` (journal id ${op.jobId})` : ""}`
  return `#${op.id} ${op.actor}/p${op.process} @${op.node} [${op.call.toFixed(0)}..${ret}] ${what} -> ${result}`
}

/** A plain Emit request body for the envelope helpers' users (fuzz). */
export { envelope }
