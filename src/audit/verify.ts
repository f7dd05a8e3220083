import { Either } from "effect"
import { decodeImage } from "../actors/StateMachine.js"
import { type ClusterState, evolve, type StateJson, toJson } from "../domain/state.js"
import { type Journal, type JournalHead, type JournalRow, rowHash } from "../storage/Journal.js"
import type { RaftSnapshot } from "./DataDir.js"
import { AuditError, Divergence } from "./errors.js"
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
 * Walks the journal from its base: every row must follow the previous one (seq + 1, prev_hash
 * = previous hash, hash = rowHash of its content) and hold a decodable event; the fold of the
 * events must reproduce the latest Raft snapshot's state at the snapshot's journal head. The
 * first divergence, by sequence number, is the answer.
 */
export const verifyJournal = (journal: Journal, snapshot: RaftSnapshot | undefined): Either.Either<VerifyReport, Divergence> =>
  Either.gen(function* () {
    const base = journal.journalBase()
    let state = yield* baseState(base)
    const checkpoint = yield* checkpointOf(snapshot)
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
      checkpoint: usable === undefined ? null : { index: usable.index, seq: usable.seq }
    }
  })

const failIf = (d: Divergence | undefined): Either.Either<void, Divergence> => (d === undefined ? Either.void : Either.left(d))

/**
 * Beside a running node, the node may install a snapshot while the audit reads, replacing the
 * journal: the rows read then belong to two journals, so the audit must be run again.
 */
export const checkUnchangedBase = (journal: Journal, baseSeq: number): void => {
  journal.refresh()
  const now = journal.journalBase().seq
  if (now !== baseSeq) {
    throw new AuditError({ message: `the node installed a snapshot during the audit (journal base moved from seq ${baseSeq} to ${now}); run it again` })
  }
}

export const describeReport = (r: VerifyReport): string => {
  const range = r.events === 0 ? "no events" : `${r.events} events, seq ${r.baseSeq + 1}..${r.lastSeq}`
  const base = r.baseSeq === 0 ? "from the first event" : `from base seq ${r.baseSeq} (this node joined by snapshot)`
  const checked = r.checkpoint === null
    ? "no Raft snapshot to compare the fold with"
    : `the fold reproduces the Raft snapshot at index ${r.checkpoint.index} (seq ${r.checkpoint.seq})`
  return `verify: ok: ${range}, hash chain intact ${base}; ${checked}`
}

export const describeDivergence = (d: Divergence): string =>
  d.seq === null ? `verify: FAILED: ${d.what}` : `verify: FAILED at seq ${d.seq}: ${d.what}`
