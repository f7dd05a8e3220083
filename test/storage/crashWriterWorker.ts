// Child process of the crash test, persisting through the raft.db writer thread (RaftLog
// "worker"): batches of BATCH entries as fast as it can, printing each acknowledged last index
// once persist succeeded, until the test kills the process with SIGKILL.
import { Effect } from "effect"
import { writeSync } from "node:fs"
import { openRaftLog } from "../../src/storage/RaftLog.js"
import { commands, CRASH_BATCH as BATCH, fresh } from "./fixtures.js"

const BATCHES_MAX = 100_000

const log = openRaftLog(process.argv[2], { persist: "worker" })
log.bootstrap(fresh)
await Effect.runPromise(
  Effect.gen(function* () {
    // The thread, not the first writes inline while it boots.
    yield* log.startWriter
    for (let n = 0; n < BATCHES_MAX; n++) {
      const last = (n + 1) * BATCH
      yield* log.persist({
        snapshot: undefined,
        truncateFrom: undefined,
        entries: commands(n * BATCH + 1, last, 1),
        hardState: { term: 1, vote: "n1:1", commit: last },
        compactTo: undefined
      })
      // The line leaves only after the writer thread said the transaction committed.
      writeSync(1, `${last}\n`)
    }
  })
)
