import { Effect } from "effect"
import type { ClusterState } from "../domain/state.js"
import type { Journal } from "../storage/Journal.js"
import { openJournal, readRaftSnapshot } from "./DataDir.js"
import { AuditError, type Divergence } from "./errors.js"
import { jobHistory as readJobHistory, type JobHistory, stateAt as foldTo } from "./replay.js"
import { checkUnchangedBase, type VerifyReport, verifyJournal } from "./verify.js"

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

/** Verifies the journal in `dir` (see verifyJournal); fails with the first Divergence. */
export const verifyDataDir = (dir: string): Effect.Effect<VerifyReport, Divergence | AuditError> =>
  Effect.gen(function* () {
    // The snapshot is read before the journal: the node makes its journal durable before it
    // snapshots, so the journal read afterwards covers the snapshot's point.
    const snapshot = yield* readRaftSnapshot(dir)
    const outcome = yield* withJournal(dir, (journal) => {
      const baseSeq = journal.journalBase().seq
      const result = verifyJournal(journal, snapshot)
      checkUnchangedBase(journal, baseSeq)
      return result
    })
    return yield* outcome
  })

/** The state as of event `seq` (default: the last event). */
export const stateAt = (dir: string, seq?: number): Effect.Effect<ClusterState, AuditError> =>
  withJournal(dir, (journal) => foldTo(journal, seq ?? journal.journalHead().seq))

/** One job's events, in order, and its final state. */
export const jobHistory = (dir: string, jobId: string): Effect.Effect<JobHistory, AuditError> =>
  withJournal(dir, (journal) => readJobHistory(journal, jobId))
