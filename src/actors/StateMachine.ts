import { HashMap, Option, Schema } from "effect"
import type { Event } from "../domain/events.js"
import { applyEntry } from "../domain/jobs.js"
import type { Entry } from "../domain/raft/types.js"
import {
  beginUpdates,
  type ClusterState,
  emptyState,
  endUpdates,
  fold,
  foldJob,
  fromJson,
  type Job,
  StateJson,
  toJson,
  wasAllocated
} from "../domain/state.js"
import { decodeEvent, type JournalInput, type Journal, type JournalHead } from "../storage/Journal.js"
import { JournalPruner } from "./JournalPruner.js"

/**
 * The snapshot image exchanged through Raft: the folded state and the journal's head, with the
 * time (`at`) of the row there. A row's `at` is its event's time, or for an event with none (a
 * membership change) the time of the row before it, and it is hashed into the chain: a node
 * that starts from an image must start with that time, or its rows differ from the others'.
 * Optional: images written before it have none (their node then starts from 0, as it did).
 */
const SnapshotImage = Schema.parseJson(
  Schema.Struct({ state: StateJson, head: Schema.Struct({ seq: Schema.Number, hash: Schema.String, at: Schema.optional(Schema.Number) }) })
)
/**
 * The image's schema is the identity on the state (plain structs of primitives and Unknown), so
 * JSON.stringify writes what Schema.encode would, in half the time: a snapshot of 60k jobs took
 * 340 ms of the main thread, now about 150. test/actors/StateMachine.test.ts holds the two equal.
 */
export const encodeImage = (image: typeof SnapshotImage.Type): string => JSON.stringify(image)
/** The Schema encoding, which encodeImage must equal. */
export const encodeImageBySchema = Schema.encodeSync(SnapshotImage)
/** Throws a ParseError for an image that is not JSON of the expected shape (audit reports it). */
export const decodeImage = Schema.decodeUnknownSync(SnapshotImage)

const isImage = Schema.is(Schema.typeSchema(SnapshotImage))
/**
 * decodeImage for the recovery path: an image already in its decoded shape (everything written
 * since snapshots carry machines) is only checked, at half the cost of a decode (100k jobs: 160
 * ms against 310); anything else takes the full decode.
 */
const decodeImageFast = (data: string): typeof SnapshotImage.Type => {
  const parsed: unknown = JSON.parse(data)
  return isImage(parsed) ? parsed : decodeImage(data)
}

export interface AppliedEntry {
  readonly index: number
  readonly term: number
  readonly events: ReadonlyArray<Event>
}

const eventAt = (e: Event, fallback: number): number => ("at" in e ? e.at : fallback)

/** Where recovery starts folding: a checkpoint the journal provably reaches, else the base. */
const startOf = (journal: Journal, checkpoint: string | undefined): { state: ClusterState; seq: number; at: number } => {
  const base = journal.journalBase()
  if (checkpoint !== undefined && checkpoint !== "") {
    try {
      const image = decodeImageFast(checkpoint)
      const { seq, hash } = image.head
      if (seq > base.seq && seq <= journal.journalHead().seq) {
        const [row] = journal.rows({ fromSeq: seq, toSeq: seq })
        if (row !== undefined && row.hash === hash) return { state: fromJson(image.state), seq, at: row.at }
      }
    } catch {
      // Not an image this journal can start from: fold from the base, which is always right.
    }
  }
  if (base.state === null) return { state: emptyState, seq: base.seq, at: 0 }
  const image = decodeImage(base.state)
  // A base retention pruned to before images had `at`: its prune mark has the row's time.
  return { state: fromJson(image.state), seq: base.seq, at: image.head.at ?? journal.pruneMark()?.eventAt ?? 0 }
}

/**
 * Applies committed entries to the replicated state: each entry's events are journaled (in
 * one transaction per batch, with the applied index) and folded into the in-memory state.
 * On start the state is rebuilt by folding the journal from its base.
 */
export class StateMachine {
  private current: ClusterState
  private lastAt = 0
  /** Journal retention (Journal.retention): prunes in bounded steps after each apply. */
  private readonly pruner: JournalPruner

  /**
   * `checkpoint`: the image of the node's latest Raft snapshot, if any. Recovery starts there
   * when the journal holds that image's head (same seq, same hash), and folds only the rows
   * after it; otherwise from the journal's base. Restarts then decode the events of at most one
   * snapshot interval instead of the whole history.
   */
  constructor(
    private readonly journal: Journal,
    checkpoint?: string
  ) {
    const start = startOf(journal, checkpoint)
    const rows = journal.rows({ fromSeq: start.seq + 1 })
    this.current = fold(rows.map((row) => decodeEvent(row.event)), start.state)
    this.lastAt = rows.length > 0 ? rows[rows.length - 1].at : start.at
    this.pruner = new JournalPruner(journal, {
      decode: (image) => (image === null ? emptyState : fromJson(decodeImage(image).state)),
      encode: (state, head, at) => encodeImage({ state: toJson(state), head: { seq: head.seq, hash: head.hash, at } })
    })
  }

  get state(): ClusterState {
    return this.current
  }

  appliedIndex(): number {
    return this.journal.appliedIndex()
  }

  head(): JournalHead {
    return this.journal.journalHead()
  }

  /**
   * Applies entries in order, skipping any at or below the applied index (replay after restart).
   * `beforeJournal` is called with what was applied once the state holds it, before the
   * journal's write: a leader answers its clients there. Their entries are committed (durable on
   * a majority), which is what the answer says; the journal is derived from them, and a node
   * that stops before its write applies them again from its Raft log when it restarts.
   */
  apply(entries: ReadonlyArray<Entry>, beforeJournal?: (applied: ReadonlyArray<AppliedEntry>) => void): Array<AppliedEntry> {
    const fresh = entries.filter((e) => e.index > this.journal.appliedIndex())
    if (fresh.length === 0) {
      beforeJournal?.([])
      return []
    }
    const rows: Array<JournalInput> = []
    const out: Array<AppliedEntry> = []
    // One run of updates for the batch: no state in between is kept (rows and out hold events).
    let s = beginUpdates(this.current)
    for (const entry of fresh) {
      const { state, events } = applyEntry(s, entry)
      for (const event of events) {
        this.lastAt = eventAt(event, this.lastAt)
        rows.push({ event, logIndex: entry.index, logTerm: entry.term, at: this.lastAt, userName: userOf(state, event) })
      }
      s = state
      out.push({ index: entry.index, term: entry.term, events })
    }
    this.current = endUpdates(s)
    beforeJournal?.(out)
    this.journal.append(rows, fresh[fresh.length - 1].index)
    this.pruner.step(this.lastAt, rows.length)
    return out
  }

  /**
   * A job as of `state` (this machine's state or one it held earlier): from the state, else, for
   * a finished job that left the state's window of recent ids (recentJobsKept), folded from its
   * own events in the journal. A finished job never changes, so the journal's newer rows answer
   * for any earlier state. Undefined when the journal no longer holds it either: pruned by
   * retention, or before the snapshot this node joined from while its history is being copied.
   */
  job(state: ClusterState, jobId: string): Job | undefined {
    const held = HashMap.get(state.jobs, jobId)
    if (Option.isSome(held)) return held.value
    if (!wasAllocated(state, jobId)) return undefined
    const after = this.journal.rows({ jobId })
    if (after.length > 0 && after[0].type === "JobAccepted") return foldJob(jobId, after.map((row) => decodeEvent(row.event)))
    // Accepted before the journal's base: its earlier events are in the history (a run that
    // reaches the base, so a job accepted there has every later row there or after the base),
    // once a node that joined by snapshot has copied them (HistoryBackfill).
    const before = this.journal.historyOf(jobId)
    if (before.length > 0 && before[0].type === "JobAccepted") return foldJob(jobId, [...before, ...after].map((row) => decodeEvent(row.event)))
    // Else it starts as the base's state holds it, which includes its rows up to the base.
    const image = this.journal.journalBase().state
    const atBase = image ? HashMap.get(fromJson(decodeImage(image).state).jobs, jobId) : Option.none()
    return Option.isSome(atBase) ? foldJob(jobId, after.map((row) => decodeEvent(row.event)), atBase.value) : undefined
  }

  /** The image a Raft snapshot carries; the journal is made durable first (see Journal.sync). */
  snapshotImage(): string {
    this.journal.sync()
    const head = { ...this.journal.journalHead(), at: this.lastAt }
    const image = encodeImage({ state: toJson(this.current), head })
    this.pruner.snapshotTaken(this.journal.appliedIndex(), head, image)
    return image
  }

  /** Loads a snapshot received from the leader: the journal restarts from its point. */
  install(data: string, index: number): void {
    if (data === "") return
    const image = decodeImage(data)
    this.journal.installBase({ seq: image.head.seq, hash: image.head.hash, state: data }, index)
    this.pruner.installed(index, image.head, data)
    this.current = fromJson(image.state)
    this.lastAt = image.head.at ?? 0
  }
}

const userOf = (state: ClusterState, e: Event): string | null => {
  if (e._tag === "JobAccepted") return e.userName
  if ("jobId" in e) {
    const job = HashMap.get(state.jobs, e.jobId)
    return Option.isSome(job) ? job.value.userName : null
  }
  return null
}
