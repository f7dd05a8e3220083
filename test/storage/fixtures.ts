import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
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

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

/**
 * Runs a crash-writer script (test/storage/crashWriter*.ts: it prints the last index it saw
 * durable after each batch) on `file` until it acknowledged `acksMin` batches, then SIGKILLs it;
 * resolves with the highest index acknowledged.
 */
export const writeUntilKilled = (writerScript: string, file: string, acksMin: number): Promise<number> =>
  new Promise((resolve, reject) => {
    // `node --import tsx` rather than the tsx CLI: the CLI forks the script into a second
    // process, which a SIGKILL of the first would leave running.
    const child = spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "test/storage", writerScript), file], { cwd: repoRoot })
    let acked = 0
    let buffered = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => {
      const lines = (buffered + chunk.toString()).split("\n")
      buffered = lines.pop() ?? ""
      for (const line of lines) acked = Math.max(acked, Number(line))
      if (acked >= acksMin * CRASH_BATCH) child.kill("SIGKILL")
    })
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("error", reject)
    child.on("exit", (_code, signal) => (signal === "SIGKILL" ? resolve(acked) : reject(new Error(`writer exited early: ${stderr}`))))
  })
