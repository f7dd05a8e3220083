// No `effect` import here: the raft.db writer thread (raftLogWorker.ts) loads this module, and
// keeps its module graph to better-sqlite3 and a few small files.

/** The caller (the Raft core) asked for a write that would leave the stored log inconsistent. */
export class StorageInvariantViolation extends Error {
  override readonly name = "StorageInvariantViolation"
}

export const assertStorage: (condition: boolean, explain: () => string) => asserts condition = (
  condition,
  explain
) => {
  if (!condition) throw new StorageInvariantViolation(explain())
}
