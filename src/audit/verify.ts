import { Either } from "effect"
import { decodeImage } from "../actors/StateMachine.js"
import { type ClusterState, evolve, type StateJson, toJson } from "../domain/state.js"
import { type Journal, type JournalBase, type JournalHead, type JournalRow, type PruneMark, rowHash } from "../storage/Journal.js"
import type { RaftSnapshot } from "./DataDir.js"
import { Divergence } from "./errors.js"
import { firstDifference } from "./firstDifference.js"
import { baseState, pages, rowEvent } from "./replay.js"

/** A Raft snapshot as a checkpoint: the state folded through `seq`, and the chain's hash there. */
interface Checkpoint {
  readonly index: number
  readonly seq: number
  readonly hash: string
  readonly state: StateJson
}

export interface VerifyReport {
  readonly baseSeq: number
  readonly lastSeq: number
  readonly events: number
  /** The Raft snapshot the fold was compared with, if any. */
  readonly checkpoint: { readonly index: number; readonly seq: number } | null
  /** Set when journal retention pruned the journal through baseSeq. */
  readonly pruned: PruneMark | null
}

const checkpointOf = (snapshot: RaftSnapshot | undefined): Either.Either<Checkpoint | undefined, Divergence> => {
  if (snapshot === undefined) return Either.right(undefined)
  try {
    const image = decodeImage(snapshot.data)
    return Either.right({ index: snapshot.index, seq: image.head.seq, hash: image.head.hash, state: image.state })
  } catch {
    return Either.left(new Divergence({ seq: null, what: `the Raft snapshot at index ${snapshot.index} (raft.db) does not decode` }))
  }
}

/** What breaks the chain at `row`, given the previous link; checked in the order that names the cause best. */
const chainBreak = (prev: JournalHead, row: JournalRow): Divergence | undefined => {
  if (row.seq !== prev.seq + 1) {
    return new Divergence({ seq: prev.seq + 1, what: `the event is missing (the next row is seq ${row.seq}): deleted or renumbered` })
  }
  if (row.prevHash !== prev.hash) {
    return new Divergence({ seq: row.seq, what: `prev_hash does not link to the hash of seq ${prev.seq}: a row was deleted, replaced or reordered` })
  }
  if (rowHash(row.prevHash, row) !== row.hash) {
    return new Divergence({ seq: row.seq, what: "the row does not hash to its stored hash: its content was edited" })
  }
  return undefined
}

/** The folded state and the chain at `checkpoint.seq` must both match the Raft snapshot taken there. */
const checkAgainst = (checkpoint: Checkpoint, state: ClusterState, hash: string): Divergence | undefined => {
  const where = `the Raft snapshot at index ${checkpoint.index}`
  if (hash !== checkpoint.hash) {
    return new Divergence({ seq: checkpoint.seq, what: `the chain's hash differs from ${where}: the journal was rewritten up to here` })
  }
  const folded: unknown = JSON.parse(JSON.stringify(toJson(state)))
  const difference = firstDifference(JSON.parse(JSON.stringify(checkpoint.state)), folded)
  return difference === undefined
    ? undefined
    : new Divergence({ seq: checkpoint.seq, what: `folding the journal does not reproduce ${where} (expected: snapshot, found: fold): ${difference}` })
}

/**
 * A journal pruned by retention: journal_meta must name its base (the last pruned event and its
 * hash, the chain's anchor), and a Raft snapshot must cover it: only events a durable snapshot
 * covers are ever pruned, and raft.db's snapshot only moves forward.
 */
const checkPruned = (mark: PruneMark, base: JournalBase, checkpoint: Checkpoint | undefined): Divergence | undefined => {
  if (mark.seq !== base.seq || mark.hash !== base.hash) {
    return new Divergence({
      seq: base.seq,
      what: `journal_meta records pruning through seq ${mark.seq} (hash ${mark.hash.slice(0, 12)}...), but the journal's base is seq ${base.seq} (hash ${base.hash.slice(0, 12)}...): the base or the record was altered`
    })
  }
  if (mark.snapshotSeq < mark.seq) {
    return new Divergence({ seq: mark.seq, what: `journal_meta says the journal was pruned through seq ${mark.seq} under a Raft snapshot that covered only seq ${mark.snapshotSeq}` })
  }
  if (checkpoint === undefined) {
    return new Divergence({ seq: null, what: `the journal was pruned through seq ${base.seq}, but raft.db holds no Raft snapshot to check it against` })
  }
  if (checkpoint.seq < base.seq) {
    return new Divergence({
      seq: base.seq,
      what: `the journal was pruned through seq ${base.seq}, past the latest Raft snapshot (index ${checkpoint.index}, seq ${checkpoint.seq}): events no snapshot covers were dropped`
    })
  }
  return undefined
}

/**
 * Walks the journal from its base: every row must follow the previous one (seq + 1, prev_hash
 * = previous hash, hash = rowHash of its content) and hold a decodable event; the fold of the
 * events must reproduce the latest Raft snapshot's state at the snapshot's journal head. The
 * first divergence, by sequence number, is the answer.
 *
 * The base is the first event's predecessor (seq 0), a snapshot the node joined by, or where
 * retention pruned the journal: then the base holds the state folded through the last pruned
 * event and its hash, the first kept row's prev_hash links to that hash, and journal_meta must
 * agree (checkPruned).
 */
export const verifyJournal = (journal: Journal, snapshot: RaftSnapshot | undefined): Either.Either<VerifyReport, Divergence> =>
  Either.gen(function* () {
    const base = journal.journalBase()
    const mark = journal.pruneMark()
    const checkpoint = yield* checkpointOf(snapshot)
    if (mark !== undefined) yield* failIf(checkPruned(mark, base, checkpoint))
    let state = yield* baseState(base)
    // A snapshot older than the base was replaced by the one the node joined by: nothing to compare.
    const usable = checkpoint !== undefined && checkpoint.seq >= base.seq ? checkpoint : undefined
    let prev: JournalHead = { seq: base.seq, hash: base.hash }
    if (usable?.seq === base.seq) yield* failIf(checkAgainst(usable, state, base.hash))
    for (const row of pages(journal, { fromSeq: base.seq + 1 })) {
      yield* failIf(chainBreak(prev, row))
      state = evolve(state, yield* Either.mapLeft(rowEvent(row), (what) => new Divergence({ seq: row.seq, what })))
      prev = { seq: row.seq, hash: row.hash }
      if (usable?.seq === row.seq) yield* failIf(checkAgainst(usable, state, row.hash))
    }
    if (usable !== undefined && usable.seq > prev.seq) {
      yield* Either.left(
        new Divergence({ seq: prev.seq + 1, what: `the journal ends at seq ${prev.seq}, but the Raft snapshot at index ${usable.index} covers events through seq ${usable.seq}` })
      )
    }
    return {
      baseSeq: base.seq,
      lastSeq: prev.seq,
      events: prev.seq - base.seq,
      checkpoint: usable === undefined ? null : { index: usable.index, seq: usable.seq },
      pruned: mark ?? null
    }
  })

const failIf = (d: Divergence | undefined): Either.Either<void, Divergence> => (d === undefined ? Either.void : Either.left(d))

/**
 * Beside a running node, the node may move the journal's base while the audit reads (install a
 * snapshot, or prune by retention): the rows read may then miss some, so the audit must read
 * again. True when it moved since `baseSeq` was read.
 */
export const baseMoved = (journal: Journal, baseSeq: number): boolean => {
  journal.refresh()
  return journal.journalBase().seq !== baseSeq
}

export const describeReport = (r: VerifyReport): string => {
  const range = r.events === 0 ? "no events" : `${r.events} events, seq ${r.baseSeq + 1}..${r.lastSeq}`
  const base = r.baseSeq === 0
    ? "from the first event"
    : r.pruned !== null
      ? `from base seq ${r.baseSeq} (events through it were pruned by journal retention, covered by the Raft snapshot at index ${r.pruned.snapshotIndex})`
      : `from base seq ${r.baseSeq} (this node joined by snapshot)`
  const checked = r.checkpoint === null
    ? "no Raft snapshot to compare the fold with"
    : `the fold reproduces the Raft snapshot at index ${r.checkpoint.index} (seq ${r.checkpoint.seq})`
  return `verify: ok: ${range}, hash chain intact ${base}; ${checked}`
}

export const describeDivergence = (d: Divergence): string =>
  d.seq === null ? `verify: FAILED: ${d.what}` : `verify: FAILED at seq ${d.seq}: ${d.what}`
