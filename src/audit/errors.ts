import { Data } from "effect"

/** The audit cannot run: a missing or unreadable data directory, a bad argument (exit code 2). */
export class AuditError extends Data.TaggedError("AuditError")<{ readonly message: string }> {}

/**
 * The journal does not verify: `seq` is the first sequence number where it diverges (null
 * when the divergence is not in the journal itself, e.g. an undecodable Raft snapshot).
 */
export class Divergence extends Data.TaggedError("Divergence")<{ readonly seq: number | null; readonly what: string }> {}
