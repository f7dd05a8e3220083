import { Data, Effect } from "effect"
import { StorageInvariantViolation } from "./StorageInvariantViolation.js"

export { assertStorage, StorageInvariantViolation } from "./StorageInvariantViolation.js"

/**
 * The durable store could not do what was asked: an I/O or SQLite failure, a corrupt row, a
 * database that belongs to another node, a double bootstrap. Operators meet these, so they are
 * typed failures; a caller's contract violations are `StorageInvariantViolation` defects.
 */
export class PersistenceError extends Data.TaggedError("PersistenceError")<{
  readonly operation: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `${this.operation}: ${this.reason}`
  }
}

/** Any failure inside `operation` as a PersistenceError, keeping bugs as they are. */
export const toPersistenceError = (operation: string, error: unknown): unknown => {
  if (error instanceof PersistenceError || error instanceof StorageInvariantViolation) return error
  const reason = error instanceof Error ? error.message : String(error)
  return new PersistenceError({ operation, reason, cause: error })
}

/** Runs a synchronous store call: its PersistenceError fails, anything else dies. */
export const attempt = <A>(f: () => A): Effect.Effect<A, PersistenceError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(f())
    } catch (error) {
      return error instanceof PersistenceError ? Effect.fail(error) : Effect.die(error)
    }
  })
