import { type ClusterState, evolve } from "../domain/state.js"
import type { Event } from "../domain/events.js"
import { decodeEvent, type Journal, type JournalHead, keepsEverything, rowHash } from "../storage/Journal.js"

/** Where a Raft snapshot stands: its index and the journal's head there, with its image if known. */
export interface SnapshotPoint {
  readonly index: number
  readonly seq: number
  /** The snapshot's data and the chain's hash at `seq`; unknown for one taken before a restart. */
  readonly image?: { readonly hash: string; readonly data: string }
}

/** The snapshot image format, from the state machine: a base is stored as one. */
export interface ImageCodec {
  /** The state an image holds; null is the empty start. */
  readonly decode: (image: string | null) => ClusterState
  /** The image of `state` at the journal position `head`, whose row's time is `at`. */
  readonly encode: (state: ClusterState, head: JournalHead, at: number) => string
}

const day = 86_400_000
/** Rows a step deletes or folds at least; it takes twice the rows its apply appended if more, so pruning keeps pace. */
const minStep = 512
/** A fold moves the base at least every this many rows (each move writes the state once). */
const maxRound = 20_000

/** A fold from the base towards the prune point, carried over steps. */
interface Round {
  state: ClusterState
  seq: number
  hash: string
  at: number
}

/**
 * Journal retention: prunes the oldest events once a durable Raft snapshot covers them, in the
 * background of the write path. Each apply gives it one bounded step: delete a batch of pruned
 * rows, and fold a batch of rows towards the prune point (the base moves when the fold gets
 * there, or every `maxRound` rows). When the prune point is the latest snapshot's own point,
 * the snapshot's image is the new base as it is: nothing is folded or encoded. A fold costs a
 * decode and an encode of the state, as a snapshot does, so it runs once per snapshot at most.
 *
 * Pruning moves the journal's base, as a node that joined by snapshot has one: the base holds
 * the state folded through the last pruned event and that event's hash, which the first kept
 * row's prev_hash links to, so `audit verify` checks the kept rows the same way.
 */
export class JournalPruner {
  /** The snapshot last taken: in raft.db once the state machine applies again. */
  private taken: SnapshotPoint | undefined
  /** The latest snapshot known to be in raft.db: nothing above its point is ever pruned. */
  private covered: SnapshotPoint | undefined
  private round: Round | undefined
  /** The fold for the covering snapshot was done: the next waits for the next snapshot. */
  private folded = false
  /** The covering snapshot's image was found too new for journal_retain_days (checked once). */
  private imageTooNew = false
  /** Pruned rows may be left to delete (after a move, or after a crash during deletion). */
  private leftovers = true
  /** A row did not follow its predecessor or did not decode: prune no further, keep the evidence. */
  private halted = false

  constructor(
    private readonly journal: Journal,
    private readonly codec: ImageCodec
  ) {
    // raft.db's snapshot only moves forward: the one that covered the last prune still covers it.
    const mark = journal.pruneMark()
    if (mark !== undefined) this.covered = { index: mark.snapshotIndex, seq: mark.snapshotSeq }
  }

  /** The state machine made a snapshot's image; the Raft core stores it next. */
  snapshotTaken(index: number, head: JournalHead, data: string): void {
    this.taken = { index, seq: head.seq, image: { hash: head.hash, data } }
  }

  /** A snapshot from the leader replaced the journal (it is in raft.db already). */
  installed(index: number, head: JournalHead, data: string): void {
    this.covered = { index, seq: head.seq, image: { hash: head.hash, data } }
    this.taken = undefined
    this.round = undefined
    this.folded = false
    this.imageTooNew = false
    this.leftovers = false
    this.halted = false
  }

  /**
   * One bounded step, after an apply of `appended` rows; `newestAt` is the newest event's time.
   * RaftNode persists the Ready that carries a snapshot before it applies anything more
   * (ready.ts), so the snapshot taken before this apply is durable now.
   */
  step(newestAt: number, appended: number): void {
    if (this.taken !== undefined) {
      if (this.covered === undefined || this.taken.seq > this.covered.seq) {
        this.covered = this.taken
        this.folded = false
        this.imageTooNew = false
      }
      this.taken = undefined
    }
    const budget = Math.max(minStep, 2 * appended)
    if (this.leftovers) {
      this.leftovers = this.journal.deletePruned(budget) === budget
      if (this.leftovers) return
    }
    const limit = this.limit()
    if (limit === undefined) return
    const days = this.journal.retention.days
    const cutoff = days > 0 ? newestAt - days * day : Number.POSITIVE_INFINITY
    if (this.round === undefined && this.fromImage(limit, cutoff)) return
    if (this.round !== undefined || !this.folded) this.fold(limit, cutoff, budget)
  }

  /** The last seq that may be pruned now, if it is above the base. */
  private limit(): number | undefined {
    const retention = this.journal.retention
    if (this.halted || keepsEverything(retention) || this.covered === undefined) return undefined
    const head = this.journal.journalHead().seq
    const limit = retention.events > 0 ? Math.min(this.covered.seq, head - retention.events) : this.covered.seq
    return limit > this.journal.journalBase().seq ? limit : undefined
  }

  /** Prunes through the covering snapshot's point with its image as the base, when that is the limit. */
  private fromImage(limit: number, cutoff: number): boolean {
    const image = this.covered?.image
    if (image === undefined || limit !== this.covered?.seq || this.imageTooNew) return false
    const last = this.journal.rows({ fromSeq: limit, toSeq: limit })[0]
    if (last === undefined || last.at >= cutoff) return false
    // Every event through the point must be old enough; `at` is the proposing leader's clock, so
    // an earlier event may be newer. One scan per snapshot: a fold then stops at the first one.
    if (cutoff !== Number.POSITIVE_INFINITY && !((this.journal.latestAt(this.journal.journalBase().seq + 1, limit) ?? cutoff) < cutoff)) {
      this.imageTooNew = true
      return false
    }
    this.move({ seq: limit, hash: image.hash, state: image.data }, last.at)
    return true
  }

  private fold(limit: number, cutoff: number, budget: number): void {
    const base = this.journal.journalBase()
    if (this.round === undefined) {
      // Checked before the base state is decoded: with days, the oldest kept event often stays.
      const first = this.journal.rows({ fromSeq: base.seq + 1, limit: 1 })[0]
      if (first === undefined || first.at >= cutoff) return
      let state: ClusterState
      try {
        state = this.codec.decode(base.state)
      } catch {
        return this.halt() // verify names an undecodable base
      }
      this.round = { state, seq: base.seq, hash: base.hash, at: 0 }
    }
    const round = this.round
    const rows = this.journal.rows({ fromSeq: round.seq + 1, toSeq: Math.min(limit, round.seq + budget) })
    if (rows.length === 0) return this.halt()
    let blocked = false
    for (const row of rows) {
      if (row.at >= cutoff) {
        blocked = true
        break
      }
      if (row.seq !== round.seq + 1 || row.prevHash !== round.hash || rowHash(row.prevHash, row) !== row.hash) return this.halt()
      let event: Event
      try {
        event = decodeEvent(row.event)
      } catch {
        return this.halt()
      }
      round.state = evolve(round.state, event)
      round.seq = row.seq
      round.hash = row.hash
      round.at = row.at
    }
    const done = blocked || round.seq >= limit
    if (!done && round.seq - base.seq < maxRound) return
    // A long way to go (retention switched on over a long journal): move the base part way,
    // and go on folding from there with the state in hand.
    this.round = done ? undefined : round
    this.folded ||= done
    if (round.seq > base.seq) {
      const head = { seq: round.seq, hash: round.hash }
      this.move({ ...head, state: this.codec.encode(round.state, head, round.at) }, round.at)
    }
  }

  private move(base: { seq: number; hash: string; state: string }, eventAt: number): void {
    const covered = this.covered
    if (covered !== undefined && this.journal.moveBase(base, { eventAt, snapshotIndex: covered.index, snapshotSeq: covered.seq })) {
      this.leftovers = true
    } else {
      this.halt()
    }
  }

  private halt(): void {
    this.halted = true
    this.round = undefined
  }
}
