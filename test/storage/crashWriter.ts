// Child process of the crash test: persists batches of BATCH entries as fast as it can and
// prints each acknowledged last index, until the test kills it with SIGKILL.
import { writeSync } from "node:fs"
import { openRaftStorage } from "../../src/storage/RaftStorage.js"
import { commands, CRASH_BATCH as BATCH, fresh } from "./fixtures.js"

const BATCHES_MAX = 100_000

const storage = openRaftStorage(process.argv[2])
storage.bootstrap(fresh)
for (let n = 0; n < BATCHES_MAX; n++) {
  const last = (n + 1) * BATCH
  const entries = commands(n * BATCH + 1, last, 1)
  storage.persist({
    snapshot: undefined,
    truncateFrom: undefined,
    entries,
    hardState: { term: 1, vote: "n1:1", commit: last },
    compactTo: undefined
  })
  // Synchronous write: the line must leave only after persist() returned.
  writeSync(1, `${last}\n`)
}
