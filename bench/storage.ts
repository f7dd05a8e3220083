// Durable append throughput of RaftStorage: one transaction (one fsync, synchronous=FULL)
// per batch, as a node persists one Ready. Run: npx tsx bench/storage.ts
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Entry } from "../src/domain/raft/types.js"
import { openRaftStorage } from "../src/storage/RaftStorage.js"

const BATCH_SIZES = [1, 16, 256]
const RUN_MS = 3000
const PAYLOAD = "x".repeat(100)
const config = { voters: ["n1:1", "n2:1", "n3:1"], outgoing: [], learners: [] }

const batch = (first: number, size: number): Array<Entry> =>
  Array.from({ length: size }, (_, i) => ({
    index: first + i,
    term: 1,
    payload: { _tag: "Command" as const, data: PAYLOAD }
  }))

/** A new store in `dir`, bootstrapped empty. */
const openFresh = (dir: string, name: string) => {
  const storage = openRaftStorage(path.join(dir, name))
  storage.bootstrap({
    hardState: { term: 1, vote: "n1:1", commit: 0 },
    snapshot: { meta: { index: 0, term: 0, config }, data: "" },
    entries: []
  })
  return storage
}

/** Appends batches of `size` for RUN_MS and returns entries/s and transactions/s. */
const measure = (dir: string, size: number) => {
  const storage = openFresh(dir, `bench-${size}.db`)
  let last = 0
  let transactions = 0
  const start = performance.now()
  while (performance.now() - start < RUN_MS) {
    const entries = batch(last + 1, size)
    last += size
    const hardState = { term: 1, vote: "n1:1", commit: last }
    storage.persist({
      snapshot: undefined,
      truncateFrom: undefined,
      entries,
      hardState,
      compactTo: undefined
    })
    transactions++
  }
  const seconds = (performance.now() - start) / 1000
  storage.close()
  return {
    entriesPerS: last / seconds,
    txPerS: transactions / seconds,
    msPerTx: (seconds * 1000) / transactions
  }
}

/**
 * One-entry transactions, `gapMs` apart (0: back to back): the wall time and CPU of one, as a
 * node pays it when the disk and the CPU have been idle since the last (docs/design.md: on the
 * 2-core VM a transaction 10 ms after the last cost about twice the wall time and four times the
 * CPU of one right after it).
 */
const paced = async (dir: string, gapMs: number, count: number) => {
  const storage = openFresh(dir, `paced-${gapMs}.db`)
  let wallMs = 0
  let cpuUs = 0
  for (let i = 1; i <= count; i++) {
    const cpu = process.cpuUsage()
    const start = performance.now()
    storage.persist({ snapshot: undefined, truncateFrom: undefined, entries: batch(i, 1), hardState: { term: 1, vote: "n1:1", commit: i }, compactTo: undefined })
    wallMs += performance.now() - start
    const used = process.cpuUsage(cpu)
    cpuUs += used.user + used.system
    if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs))
  }
  storage.close()
  return { wallUs: (wallMs * 1000) / count, cpuUs: cpuUs / count }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "raft-storage-bench-"))
try {
  console.log(`RaftStorage append, ${PAYLOAD.length}-byte commands, WAL + synchronous=FULL, ${dir}`)
  for (const size of BATCH_SIZES) {
    const r = measure(dir, size)
    console.log(
      `batch ${String(size).padStart(3)}: ${r.entriesPerS.toFixed(0).padStart(8)} entries/s` +
        `  ${r.txPerS.toFixed(0).padStart(6)} tx/s  ${r.msPerTx.toFixed(3)} ms/tx`
    )
  }
  for (const gapMs of [0, 10]) {
    const r = await paced(dir, gapMs, gapMs === 0 ? 1000 : 200)
    console.log(`one-entry transactions ${gapMs === 0 ? "back to back" : `${gapMs} ms apart`}: ${r.wallUs.toFixed(0)} us wall, ${r.cpuUs.toFixed(0)} us CPU each`)
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
