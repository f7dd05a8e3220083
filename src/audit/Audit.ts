import { Effect, Either, Option } from "effect"
import type { ClusterState } from "../domain/state.js"
import type { Journal } from "../storage/Journal.js"
import { openJournal, readRaftSnapshotNow } from "./DataDir.js"
import { AuditError, type Divergence } from "./errors.js"
import { jobHistory as readJobHistory, type JobHistory, stateAt as foldTo } from "./replay.js"
import { baseMoved, type VerifyReport, verifyJournal } from "./verify.js"

/**
 * The audit as Effects over a data directory, for the CLI and for apps that audit in-process.
 * Each opens the journal read-only and closes it when done.
 */

/** Runs `f` on the journal in `dir`; an AuditError it throws stays one, anything else becomes one. */
export const withJournal = <A>(dir: string, f: (journal: Journal) => A): Effect.Effect<A, AuditError> =>
  Effect.scoped(
    Effect.flatMap(openJournal(dir), (journal) =>
      Effect.try({
        try: () => f(journal),
        catch: (e) => (e instanceof AuditError ? e : new AuditError({ message: `${dir}: ${e instanceof Error ? e.message : String(e)}` }))
      })
    )
  )

/** Reads beside a running node that keeps moving the journal's base are tried this often. */
const attempts = 5

/**
 * Runs `f` on the journal in `dir`, again if it failed (or `stale` says its result may be) and
 * the node moved the journal's base meanwhile (installed a snapshot, or retention pruned it):
 * rows read may then have been deleted under the reader, and the failure be due to that alone.
 */
const withSteadyJournal = <A>(dir: string, what: string, f: (journal: Journal) => A, stale: (a: A) => boolean): Effect.Effect<A, AuditError> =>
  Effect.gen(function* () {
    for (let attempt = 0; attempt < attempts; attempt++) {
      const outcome = yield* withJournal(dir, (journal) => {
        const baseSeq = journal.journalBase().seq
        let result: Either.Either<A, unknown>
        try {
          result = Either.right(f(journal))
        } catch (e) {
          result = Either.left(e)
        }
        if ((Either.isLeft(result) || stale(result.right)) && baseMoved(journal, baseSeq)) return Option.none()
        if (Either.isLeft(result)) throw result.left
        return Option.some(result.right)
      })
      if (Option.isSome(outcome)) return outcome.value
    }
    return yield* new AuditError({
      message: `the node moved the journal's base (installing snapshots or pruning by retention) during each of ${attempts} attempts to ${what}; run it again`
    })
  })

/** Verifies the journal in `dir` (see verifyJournal); fails with the first Divergence. */
export const verifyDataDir = (dir: string): Effect.Effect<VerifyReport, Divergence | AuditError> =>
  Effect.flatten(
    // The Raft snapshot is read after the journal's base and before its rows. The node prunes
    // only what a snapshot in raft.db covers, so that snapshot covers the base; and it makes its
    // journal durable before each snapshot, so the rows read afterwards reach the snapshot's
    // point. A verify that passed read one unbroken chain, even if the base moved meanwhile.
    withSteadyJournal(dir, "verify", (journal) => verifyJournal(journal, readRaftSnapshotNow(dir)), Either.isLeft)
  )

/** The state as of event `seq` (default: the last event); a row missing from the fold fails it. */
export const stateAt = (dir: string, seq?: number): Effect.Effect<ClusterState, AuditError> =>
  withSteadyJournal(dir, "replay", (journal) => foldTo(journal, seq ?? journal.journalHead().seq), () => false)

/** One job's events, in order, and its final state. */
export const jobHistory = (dir: string, jobId: string): Effect.Effect<JobHistory, AuditError> =>
  // Only the job's rows are read, so a row deleted under the reader shows no gap: read again.
  withSteadyJournal(dir, "read the job", (journal) => readJobHistory(journal, jobId), () => true)
