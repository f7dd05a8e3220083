import { Either, HashMap, Option } from "effect"
import { decodeImage } from "../actors/StateMachine.js"
import type { Event } from "../domain/events.js"
import { type ClusterState, emptyState, evolve, foldJob, fromJson, type Job } from "../domain/state.js"
import { decodeEvent, type Journal, type JournalBase, type JournalFilter, type JournalRow } from "../storage/Journal.js"
import { AuditError, Divergence } from "./errors.js"

/** Rows per read. Each page is its own short read transaction: see `pages`. */
const pageRows = 1000

/**
 * The rows `filter` selects, in order, read a page at a time. Beside a running node one
 * long-lived read transaction would hold back its WAL checkpoints; rows are only appended at
 * the end, so consecutive pages form one consistent sequence unless the node moved the
 * journal's base meanwhile (retention pruned it, or a snapshot was installed): the callers
 * that need one sequence check the base afterwards (see Audit.ts).
 */
export function* pages(journal: Journal, filter: JournalFilter): Generator<JournalRow> {
  let fromSeq = filter.fromSeq
  let left = filter.limit ?? Number.POSITIVE_INFINITY
  for (;;) {
    const limit = Math.min(pageRows, left)
    const page = journal.rows({ ...filter, fromSeq, limit })
    yield* page
    left -= page.length
    if (page.length < limit || left === 0) return
    fromSeq = page[page.length - 1].seq + 1
  }
}

/**
 * Why the journal holds no events through its base, for messages; "" when it starts at the
 * first event.
 */
export const baseReason = (journal: Journal): string => {
  const base = journal.journalBase()
  const mark = journal.pruneMark()
  if (mark !== undefined && mark.seq === base.seq) {
    return `events through seq ${base.seq} were pruned by journal retention (journal_retain_events / journal_retain_days)`
  }
  return base.seq === 0 ? "" : `events through seq ${base.seq} precede the snapshot this node joined by (other members' journals hold them)`
}

/** The state the journal's fold starts from: empty, or the snapshot image the node joined by or retention pruned to. */
export const baseState = (base: JournalBase): Either.Either<ClusterState, Divergence> => {
  if (base.state === null) return Either.right(emptyState)
  try {
    const image = decodeImage(base.state)
    if (image.head.seq !== base.seq || image.head.hash !== base.hash) {
      return Either.left(new Divergence({ seq: base.seq, what: "the base snapshot's journal head does not match the stored base seq and hash" }))
    }
    return Either.right(fromJson(image.state))
  } catch {
    return Either.left(new Divergence({ seq: base.seq, what: "the base snapshot (sm_base.state) does not decode" }))
  }
}

/** The row's event, or what is wrong with it. */
export const rowEvent = (row: JournalRow): Either.Either<Event, string> => {
  let event: Event
  try {
    event = decodeEvent(row.event)
  } catch {
    return Either.left("the event JSON does not decode as any known event version")
  }
  return event._tag === row.type ? Either.right(event) : Either.left(`the type column says ${row.type} but the event is ${event._tag}`)
}

const decodeOrFail = (row: JournalRow): Event =>
  Either.getOrThrowWith(rowEvent(row), (what) => new AuditError({ message: `seq ${row.seq}: ${what}; run verify` }))

const startOf = (journal: Journal): ClusterState =>
  Either.getOrThrowWith(baseState(journal.journalBase()), (d) => new AuditError({ message: `seq ${d.seq}: ${d.what}; run verify` }))

/** The state as of event `seq`: the fold of the journal from its base through `seq`. */
export const stateAt = (journal: Journal, seq: number): ClusterState => {
  const base = journal.journalBase()
  const head = journal.journalHead()
  if (seq < base.seq) {
    throw new AuditError({ message: `seq ${seq} is not in this journal: ${baseReason(journal)}` })
  }
  if (seq > head.seq) throw new AuditError({ message: `seq ${seq} is past the journal's last event, seq ${head.seq}` })
  let state = startOf(journal)
  let prev = base.seq
  for (const row of pages(journal, { fromSeq: base.seq + 1, toSeq: seq })) {
    if (row.seq !== prev + 1) throw new AuditError({ message: `seq ${prev + 1} is missing from the journal; run verify` })
    state = evolve(state, decodeOrFail(row))
    prev = row.seq
  }
  if (prev !== seq) throw new AuditError({ message: `seq ${prev + 1} is missing from the journal; run verify` })
  return state
}

export interface JobHistory {
  readonly rows: ReadonlyArray<JournalRow>
  readonly job: Job
  /** The journal's base: a job accepted before it has its earlier events only in its base state. */
  readonly baseSeq: number
  /** Why the journal holds no events through baseSeq (see baseReason); "" when it starts at the first. */
  readonly baseReason: string
}

/**
 * One job's events in order and its final state. Only the job's own events change it, so
 * folding them over the base suffices; the base holds the job when it began before the base.
 */
export const jobHistory = (journal: Journal, jobId: string): JobHistory => {
  const baseSeq = journal.journalBase().seq
  const rows = [...pages(journal, { jobId, fromSeq: baseSeq + 1 })]
  const atBase = Option.getOrUndefined(HashMap.get(startOf(journal).jobs, jobId))
  const job = foldJob(jobId, rows.map(decodeOrFail), atBase)
  if (job === undefined) throw new AuditError({ message: `no job ${jobId} in this journal` })
  return { rows, job, baseSeq, baseReason: baseReason(journal) }
}
