/**
 * A linearizability checker in the style of Porcupine (Wing & Gong's search with Lowe's
 * memoisation): the history's call and return events in one doubly-linked list, a depth-first
 * search that linearizes any call whose return has not been passed yet, and a cache of visited
 * (linearized set, model state) pairs so that no configuration is explored twice. Histories are
 * partitioned by the model (per key) and each partition is searched on its own; a deadline turns
 * a search that takes too long into "unknown" instead of a verdict.
 *
 * An operation whose outcome is unknown (a timeout, a connection reset) returns at +infinity:
 * it may take effect at any point after its call, or, if the model allows, never.
 */

/** One client operation as recorded: times are milliseconds on one monotonic clock. */
export interface Operation<I, O> {
  /** Unique within a history (the index in the recorder). */
  readonly id: number
  /** The client (Jepsen's process) that ran it. */
  readonly process: number
  readonly call: number
  /** Infinity when the outcome is unknown. */
  readonly ret: number
  readonly input: I
  /** undefined when the outcome is unknown. */
  readonly output: O | undefined
}

export interface Model<S, I, O> {
  readonly name: string
  readonly init: S
  /** The next state when `input` returning `output` is applied to `state`; undefined if illegal. */
  readonly step: (state: S, input: I, output: O | undefined) => S | undefined
  /** A canonical text of the state (the memo key). */
  readonly stateKey: (state: S) => string
  /** Independent sub-histories (e.g. per key); the whole history when absent. */
  readonly partition?: (ops: ReadonlyArray<Operation<I, O>>) => Map<string, Array<Operation<I, O>>>
  readonly describeOp?: (op: Operation<I, O>) => string
}

export type Outcome = "ok" | "illegal" | "unknown"

export interface PartitionResult<I, O> {
  readonly key: string
  readonly outcome: Outcome
  readonly ops: ReadonlyArray<Operation<I, O>>
  /** For "illegal": the longest sequence of operations the search could linearize. */
  readonly longestPrefix: ReadonlyArray<Operation<I, O>>
  /** For "illegal": the operations still pending where that longest prefix got stuck. */
  readonly stuck: ReadonlyArray<Operation<I, O>>
  readonly explored: number
}

export interface CheckResult<I, O> {
  readonly outcome: Outcome
  readonly partitions: ReadonlyArray<PartitionResult<I, O>>
  readonly elapsedMs: number
}

interface Entry {
  readonly isCall: boolean
  readonly op: number
  readonly time: number
  match: Entry | undefined
  prev: Entry | undefined
  next: Entry | undefined
}

/** A 32-bit xorshift: Zobrist keys for the linearized set (two per operation: 64-bit hashes). */
const zobrist = (n: number): Uint32Array => {
  const keys = new Uint32Array(2 * n)
  let x = 0x9e3779b9
  for (let i = 0; i < keys.length; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    keys[i] = x
  }
  return keys
}

const buildList = <I, O>(ops: ReadonlyArray<Operation<I, O>>): Entry => {
  const events: Array<Entry> = []
  ops.forEach((op, i) => {
    const call: Entry = { isCall: true, op: i, time: op.call, match: undefined, prev: undefined, next: undefined }
    const ret: Entry = { isCall: false, op: i, time: op.ret, match: undefined, prev: undefined, next: undefined }
    call.match = ret
    events.push(call, ret)
  })
  // Calls before returns at equal times: operations that touch are taken as concurrent (permissive).
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.op - b.op : a.isCall ? -1 : 1))
  const head: Entry = { isCall: false, op: -1, time: -Infinity, match: undefined, prev: undefined, next: undefined }
  let last = head
  for (const e of events) {
    last.next = e
    e.prev = last
    last = e
  }
  return head
}

const lift = (call: Entry): void => {
  call.prev!.next = call.next
  call.next!.prev = call.prev
  const ret = call.match!
  ret.prev!.next = ret.next
  if (ret.next !== undefined) ret.next.prev = ret.prev
}

const unlift = (call: Entry): void => {
  const ret = call.match!
  ret.prev!.next = ret
  if (ret.next !== undefined) ret.next.prev = ret
  call.prev!.next = call
  call.next!.prev = call
}

export class Deadline {
  constructor(readonly at: number) {}
  static in(ms: number): Deadline {
    return new Deadline(Date.now() + ms)
  }
  get passed(): boolean {
    return Date.now() >= this.at
  }
}

/** Searches one partition. */
export const checkPartition = <S, I, O>(
  model: Model<S, I, O>,
  ops: ReadonlyArray<Operation<I, O>>,
  deadline: Deadline,
  key = "all"
): PartitionResult<I, O> => {
  const n = ops.length
  const keys = zobrist(n)
  const head = buildList(ops)
  const cache = new Set<string>()
  const linearized = new Uint8Array(n)
  let h1 = 0
  let h2 = 0
  let state = model.init
  const calls: Array<{ entry: Entry; state: S }> = []
  let best: Array<number> = []
  let bestDepth = -1
  let bestStale = false
  let explored = 0
  let entry = head.next

  const snapshotBest = () => {
    best = calls.map((c) => c.entry.op)
    bestStale = false
  }

  while (head.next !== undefined) {
    if ((++explored & 1023) === 0 && deadline.passed) {
      return { key, outcome: "unknown", ops, longestPrefix: [], stuck: [], explored }
    }
    if (entry === undefined) throw new Error("linearizability search ran off the event list (a bug in the checker)")
    if (entry.isCall) {
      const op = ops[entry.op]
      const next = model.step(state, op.input, op.output)
      if (next !== undefined) {
        const n1 = (h1 ^ keys[2 * entry.op]) >>> 0
        const n2 = (h2 ^ keys[2 * entry.op + 1]) >>> 0
        const memo = `${n1}:${n2}:${model.stateKey(next)}`
        if (!cache.has(memo)) {
          cache.add(memo)
          calls.push({ entry, state })
          state = next
          linearized[entry.op] = 1
          h1 = n1
          h2 = n2
          lift(entry)
          if (calls.length > bestDepth) {
            bestDepth = calls.length
            bestStale = true
          }
          entry = head.next
          continue
        }
      }
      entry = entry.next
    } else {
      // A return whose call is not linearized yet: this branch is dead.
      if (bestStale && calls.length === bestDepth) snapshotBest()
      if (calls.length === 0) {
        const done = new Set(best)
        const pending = ops.filter((_, i) => !done.has(i))
        const firstRet = Math.min(...pending.map((o) => o.ret))
        const stuck = pending.filter((o) => o.call <= firstRet)
        return { key, outcome: "illegal", ops, longestPrefix: best.map((i) => ops[i]), stuck, explored }
      }
      const top = calls.pop()!
      entry = top.entry
      state = top.state
      linearized[entry.op] = 0
      h1 = (h1 ^ keys[2 * entry.op]) >>> 0
      h2 = (h2 ^ keys[2 * entry.op + 1]) >>> 0
      unlift(entry)
      entry = entry.next
    }
  }
  return { key, outcome: "ok", ops, longestPrefix: [], stuck: [], explored }
}

/** Checks every partition of the history; "illegal" if any is, else "unknown" if any timed out. */
export const check = <S, I, O>(
  model: Model<S, I, O>,
  history: ReadonlyArray<Operation<I, O>>,
  timeoutMs = 30_000
): CheckResult<I, O> => {
  const started = Date.now()
  const deadline = Deadline.in(timeoutMs)
  const parts = model.partition ? model.partition(history) : new Map([["all", [...history]]])
  const results: Array<PartitionResult<I, O>> = []
  let outcome: Outcome = "ok"
  for (const [key, ops] of parts) {
    const r = checkPartition(model, ops, deadline, key)
    results.push(r)
    if (r.outcome === "illegal") outcome = "illegal"
    else if (r.outcome === "unknown" && outcome === "ok") outcome = "unknown"
  }
  return { outcome, partitions: results, elapsedMs: Date.now() - started }
}

/**
 * Shrinks a non-linearizable history by removing operations that `removable` allows (operations
 * that do not change the model's state, such as reads: removing them from a linearizable history
 * leaves it linearizable, so every smaller history found is a true witness). Chunks first, then
 * one operation at a time; bounded by `timeoutMs` (the best witness so far is returned).
 */
export const shrink = <S, I, O>(
  model: Model<S, I, O>,
  ops: ReadonlyArray<Operation<I, O>>,
  removable: (op: Operation<I, O>) => boolean,
  timeoutMs = 10_000
): Array<Operation<I, O>> => {
  const deadline = Deadline.in(timeoutMs)
  const illegal = (candidate: ReadonlyArray<Operation<I, O>>): boolean =>
    checkPartition(model, candidate, new Deadline(Math.min(deadline.at, Date.now() + 2000))).outcome === "illegal"
  let current = [...ops]
  if (!illegal(current)) return current
  let chunk = Math.max(1, Math.floor(current.filter(removable).length / 2))
  while (chunk >= 1 && !deadline.passed) {
    let progressed = false
    let i = 0
    while (i < current.length && !deadline.passed) {
      // Remove the next `chunk` removable operations from position i on.
      const drop = new Set<number>()
      let j = i
      while (j < current.length && drop.size < chunk) {
        if (removable(current[j])) drop.add(j)
        j++
      }
      if (drop.size === 0) break
      const candidate = current.filter((_, k) => !drop.has(k))
      if (illegal(candidate)) {
        current = candidate
        progressed = true
      } else {
        i = j
      }
    }
    if (!progressed) chunk = Math.floor(chunk / 2)
  }
  return current
}

// ----------------------------------------------------------------------------- the job registry

/**
 * Operations on the job registry. `submit` creates a job (the id is the reply's, or, for an
 * unknown outcome, the id the journal shows the submit got); `read` is get_status of one id.
 */
export type JobInput =
  | { readonly f: "submit"; readonly id: string }
  | { readonly f: "read"; readonly id: string }

export type JobStatus = "not_started" | "ongoing" | "done" | "failed"

/**
 * What a read observed: a status, or (with journal retention) that the job ended and its events
 * were pruned: it exists, and is done or failed.
 */
export type ReadStatus = JobStatus | "forgotten"

export type JobOutput =
  | { readonly f: "submit" }
  | { readonly f: "read"; readonly found: false }
  | { readonly f: "read"; readonly found: true; readonly status: ReadStatus }

export type JobOp = Operation<JobInput, JobOutput>

const rank: Record<JobStatus, number> = { not_started: 0, ongoing: 1, done: 2, failed: 2 }

/** Whether a job in `from` may be observed in `to` later: statuses only move forward; done and failed are final. */
export const statusCanReach = (from: JobStatus, to: JobStatus): boolean => from === to || rank[to] > rank[from]

/** "ended": done or failed, not yet told which (a read found it forgotten). */
type JobState = "absent" | JobStatus | "ended"

/** The job's state after a read observed `seen` in `state`, or undefined if it cannot have. */
const observe = (state: Exclude<JobState, "absent">, seen: ReadStatus): JobState | undefined => {
  if (seen === "forgotten") return state === "done" || state === "failed" ? state : "ended"
  if (state === "ended") return seen === "done" || seen === "failed" ? seen : undefined
  return statusCanReach(state, seen) ? seen : undefined
}

const describeJobOp = (op: JobOp): string => {
  const out = op.output === undefined ? "?" : op.output.f === "submit" ? "accept" : op.output.found ? op.output.status : "not-found"
  const ret = Number.isFinite(op.ret) ? op.ret.toFixed(1) : "inf"
  return `#${op.id} p${op.process} [${op.call.toFixed(1)}, ${ret}] ${op.input.f}(${op.input.id}) -> ${out}`
}

/**
 * One job as a register that is created once and whose status only moves forward (the job runs
 * on its own between operations): a read finds nothing before the job's submit takes effect, then
 * a status reachable from the last one observed, or (journal retention) that it ended and its
 * events were pruned. Partitioned by job id.
 */
export const jobModel: Model<JobState, JobInput, JobOutput> = {
  name: "job",
  init: "absent",
  step: (state, input, output) => {
    if (input.f === "submit") return state === "absent" ? "not_started" : undefined
    if (output === undefined || output.f !== "read") return state
    if (!output.found) return state === "absent" ? state : undefined
    return state === "absent" ? undefined : observe(state, output.status)
  },
  stateKey: (s) => s,
  partition: (ops) => {
    const parts = new Map<string, Array<JobOp>>()
    for (const op of ops) {
      const list = parts.get(op.input.id)
      if (list === undefined) parts.set(op.input.id, [op])
      else list.push(op)
    }
    return parts
  },
  describeOp: describeJobOp
}

/**
 * The registry as a whole: job ids are allocated 1, 2, 3, ... in the order the submits take
 * effect, so the state is the highest id allocated; a read that finds job X sees a state with
 * X in it, a read that does not find X sees one without it. This catches stale reads across
 * jobs (job 7 seen, then job 5 not found) that the per-job model cannot see. Every id must have
 * its submit in the history (the runner adds one of unknown origin for an id nobody submitted).
 */
export const registryModel: Model<number, JobInput, JobOutput> = registryFrom(0)

/**
 * The registry model starting with ids 1..`init` allocated. Sound for a sub-history whose reads
 * all name ids above `init` once the submits of ids 1..`init` are left out (see narrowRegistry).
 */
export function registryFrom(init: number): Model<number, JobInput, JobOutput> {
  return {
  name: "registry",
  init,
  step: (state, input, output) => {
    const id = Number(input.id)
    if (input.f === "submit") return state === id - 1 ? id : undefined
    if (output === undefined || output.f !== "read") return state
    return output.found ? (state >= id ? state : undefined) : state < id ? state : undefined
  },
  stateKey: (s) => String(s),
  describeOp: describeJobOp
  }
}

/**
 * Narrows a non-linearizable registry history (reads already shrunk) by trimming submits from
 * both ends of the id range while it stays illegal: the submit of the highest id when no read
 * names that id or a higher one (it only raises the counter after every read's constraint), and
 * the submit of the lowest id when no read names that id or a lower one (it is folded into the
 * initial state). Both keep a linearizable history linearizable, so the result is a witness.
 */
export const narrowRegistry = (
  ops: ReadonlyArray<JobOp>,
  timeoutMs = 5000
): { ops: Array<JobOp>; model: Model<number, JobInput, JobOutput> } | undefined => {
  const deadline = Deadline.in(timeoutMs)
  const readIds = ops.filter(isRead).map((o) => Number(o.input.id))
  const lowRead = readIds.length ? Math.min(...readIds) : Infinity
  const highRead = readIds.length ? Math.max(...readIds) : -Infinity
  const submits = ops.filter((o) => !isRead(o)).map((o) => Number(o.input.id)).sort((a, b) => a - b)
  let lo = 0
  let hi = submits.length - 1
  const within = (a: number, b: number) => ops.filter((o) => isRead(o) || (Number(o.input.id) >= submits[a] && Number(o.input.id) <= submits[b]))
  const illegal = (a: number, b: number) =>
    a <= b && checkPartition(registryFrom(submits[a] - 1), within(a, b), new Deadline(Math.min(deadline.at, Date.now() + 1000))).outcome === "illegal"
  if (submits.length === 0 || !illegal(lo, hi)) return undefined
  // Binary search each end: a range that is illegal stays illegal when it grows.
  const trimTop = () => {
    // Removable: submits of ids above every read. Smallest hi' in [floor, hi] still illegal.
    let floor = lo
    while (floor < hi && submits[floor + 1] <= highRead) floor++
    let good = hi
    let low = floor
    while (low < good && !deadline.passed) {
      const mid = Math.floor((low + good) / 2)
      if (illegal(lo, mid)) good = mid
      else low = mid + 1
    }
    hi = good
  }
  const trimBottom = () => {
    // Removable: submits of ids below every read. Largest lo' in [lo, ceiling] still illegal.
    let ceiling = lo
    while (ceiling < hi && submits[ceiling] < lowRead) ceiling++
    let good = lo
    let high = ceiling
    while (good < high && !deadline.passed) {
      const mid = Math.ceil((good + high) / 2)
      if (illegal(mid, hi)) good = mid
      else high = mid - 1
    }
    lo = good
  }
  trimTop()
  trimBottom()
  return { ops: within(lo, hi), model: registryFrom(submits[lo] - 1) }
}

export const isRead = (op: JobOp): boolean => op.input.f === "read"
