import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Persisted } from "../../src/domain/raft/ready.js"
import type { Configuration, Entry } from "../../src/domain/raft/types.js"
import type { PersistInput } from "../../src/storage/RaftStorage.js"

export const config: Configuration = {
  voters: ["n1:1", "n2:1", "n3:1"],
  outgoing: [],
  learners: []
}

export const command = (index: number, term: number, data = `cmd-${index}`): Entry => ({
  index,
  term,
  payload: { _tag: "Command", data }
})

/** Entries lo..hi (inclusive) in `term`. */
export const commands = (lo: number, hi: number, term: number): Array<Entry> =>
  Array.from({ length: hi - lo + 1 }, (_, i) => command(lo + i, term))

export const fresh: Persisted = {
  hardState: { term: 0, vote: null, commit: 0 },
  snapshot: { meta: { index: 0, term: 0, config }, data: "" },
  entries: []
}

export const nothing: PersistInput = {
  snapshot: undefined,
  truncateFrom: undefined,
  entries: [],
  hardState: undefined,
  compactTo: undefined
}

/** Entries per transaction written by crashWriter.ts. */
export const CRASH_BATCH = 8

/** A temporary directory per call; `cleanup` removes all of them. */
export const makeTempDirs = () => {
  const dirs: Array<string> = []
  return {
    dbPath: (): string => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "raft-storage-"))
      dirs.push(dir)
      return path.join(dir, "raft.db")
    },
    cleanup: (): void => {
      for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}
