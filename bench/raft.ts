/**
 * `npm run bench -- raft`: committed proposals/s and p50/p99 commit latency of in-process
 * groups (3 and 5 members, RaftNode actors over the in-memory network, SQLite files with
 * fsync on), at 1, 16 and 256 concurrent proposers. Each proposal goes the full path: Raft log,
 * commit on a majority, apply, journal.
 */
import { Clock, Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { makeInProcessGroup } from "../src/inProcess.js"

const durationMs = Number(process.env.BENCH_SECONDS ?? "3") * 1000

const pct = (sorted: ReadonlyArray<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN

const runOne = (size: number, concurrency: number) =>
  Effect.gen(function* () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cm-bench-"))
    const members = Array.from({ length: size }, (_, i) => `b${i}:1`)
    const g = yield* makeInProcessGroup({ members, dataDir: dir, raft: { snapshotEntries: 50_000 } })
    let leader = g.members[0]
    for (let i = 0; i < 500; i++) {
      const found = g.members.find((m) => Effect.runSync(m.node.status).role === "leader")
      if (found) {
        leader = found
        break
      }
      yield* Effect.sleep("10 millis")
    }
    const latencies: Array<number> = []
    const end = (yield* Clock.currentTimeMillis) + durationMs
    const worker = Effect.gen(function* () {
      while ((yield* Clock.currentTimeMillis) < end) {
        const t0 = performance.now()
        yield* leader.node.submit({ _tag: "SubmitJob", jobType: "bench", userName: "bench", paras: { n: "1" }, at: 0 })
        latencies.push(performance.now() - t0)
      }
    })
    const t0 = performance.now()
    yield* Effect.all(Array.from({ length: concurrency }, () => worker), { concurrency: "unbounded" })
    const seconds = (performance.now() - t0) / 1000
    latencies.sort((a, b) => a - b)
    fs.rmSync(dir, { recursive: true, force: true })
    return { size, concurrency, perSecond: latencies.length / seconds, p50: pct(latencies, 0.5), p99: pct(latencies, 0.99) }
  }).pipe(Effect.scoped)

export const benchRaft = Effect.gen(function* () {
  console.log(`raft: in-process groups, SQLite files with fsync, ${durationMs / 1000}s per row`)
  console.log("members  proposers  committed/s   p50 ms   p99 ms")
  for (const size of [3, 5]) {
    for (const concurrency of [1, 16, 256]) {
      const r = yield* runOne(size, concurrency)
      console.log(
        `${String(r.size).padStart(7)}  ${String(r.concurrency).padStart(9)}  ${r.perSecond.toFixed(0).padStart(11)}  ${r.p50.toFixed(2).padStart(7)}  ${r.p99.toFixed(2).padStart(7)}`
      )
    }
  }
})
