/**
 * `npm run bench [-- name...]`: runs the named benchmarks (all when none is named) and prints
 * their figures. Figures, never assertions: speed is judged here, not in tests.
 */
import { Effect, Logger, LogLevel } from "effect"
import { spawnSync } from "node:child_process"
import { benchRaft } from "./raft.js"

const standalone: Record<string, string> = {
  storage: "bench/storage.ts",
  transport: "bench/transport.ts",
  /** cluster_mgr beside etcd: real processes, failover, RSS (bench/emit.ts; installs etcd-server when missing). */
  emit: "bench/emit.ts"
}
const names = process.argv.slice(2)
const wanted = (n: string) => names.length === 0 || names.includes(n)

for (const [name, file] of Object.entries(standalone)) {
  if (wanted(name)) spawnSync(process.execPath, ["--import", "tsx", file], { stdio: "inherit" })
}
if (wanted("raft")) await Effect.runPromise(benchRaft.pipe(Logger.withMinimumLogLevel(LogLevel.None)))
