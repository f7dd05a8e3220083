import { assertStorage } from "./StorageInvariantViolation.js"

/** The index and term of the last stored entry, or of the snapshot when the log is empty. */
export interface LogPosition {
  readonly index: number
  readonly term: number
}

export const logOrigin: LogPosition = { index: 0, term: 0 }

/**
 * Appended entries must continue the log right after `last`, one index at a time, with terms
 * that never go down. Anything else means the core skipped a truncation or lost track of its
 * log, and storing it would make a restart load a log that never existed.
 */
export const checkAppend = (last: LogPosition, entries: ReadonlyArray<LogPosition>): void => {
  let previous = last
  for (const entry of entries) {
    assertStorage(
      entry.index === previous.index + 1,
      () => `entry ${entry.index} does not follow ${previous.index} (truncateFrom missing?)`
    )
    assertStorage(
      entry.term >= previous.term,
      () => `entry ${entry.index} has term ${entry.term} below ${previous.term} before it`
    )
    previous = entry
  }
}

/** Only entries a snapshot covers may be dropped, else a restart would load a gap. */
export const checkCompaction = (compactTo: number, snapshotIndex: number): void =>
  assertStorage(
    compactTo <= snapshotIndex + 1,
    () => `compactTo ${compactTo} would drop entries after snapshot ${snapshotIndex}`
  )

/** A snapshot older than the stored one would roll the state machine back. */
export const checkSnapshotAdvances = (index: number, storedIndex: number): void =>
  assertStorage(
    index >= storedIndex,
    () => `snapshot at ${index} is older than the stored one at ${storedIndex}`
  )

/** The commit index can only name entries that are stored (or covered by the snapshot). */
export const checkCommit = (commit: number, last: LogPosition): void =>
  assertStorage(
    commit <= last.index,
    () => `commit ${commit} is beyond the last stored index ${last.index}`
  )
