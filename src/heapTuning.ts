import * as os from "node:os"
import * as v8 from "node:v8"

/**
 * V8 flags for a `cluster_mgr <cnf>` process (cli.ts; not for an app that embeds a node: that
 * process is the app's to tune). Both are read by V8 at each collection, so they can be set once
 * the process runs, unlike the young generation's size; an operator's own flag on the command
 * line wins.
 *
 * - The old generation's growth. V8 lets it grow up to four times the live heap after each full
 *   collection while collections are cheap, and a node's live heap is small (about 20 MB on the
 *   leader after a 10 s load at concurrency 64, from a heap snapshot) while what it promotes
 *   under load is mostly short-lived (requests in flight): the leader's old generation reached
 *   65-80 MB, almost all garbage. Twice the live heap at most (`--heap-growing-percent=100`)
 *   takes that off.
 * - The young generation's collections on one thread (`--no-parallel-scavenge`) where there are
 *   at most two cores. V8 splits each scavenge between the main thread and helper threads and
 *   the main thread waits for all of them; with two cores the helpers compete with the node's
 *   own threads (its event loop and its raft.db writer) and with its peers on the same host, and
 *   a scavenge took 8-11 ms of the main thread plus as much of a helper's. On one thread, 7
 *   interleaved rounds of the emit bench on a 2-core VM gave about 5% more jobs/s at
 *   concurrency 16 and 6% at 64 (ahead in 6 of 7 rounds at each), with less CPU per job in 12 of
 *   14 comparisons. With spare cores the helpers shorten the pause instead, so V8's default stays.
 */
export const heapGrowingPercent = 100
export const serialScavengeUpToCores = 2

const given = (execArgv: ReadonlyArray<string>, name: string): boolean => {
  const forms = [name, name.replaceAll("-", "_")].flatMap((n) => [`--${n}`, `--no-${n}`, `--no${n.replaceAll("-", "_")}`])
  return execArgv.some((a) => forms.some((f) => a === f || a.startsWith(`${f}=`)))
}

/** Sets the flags above that the command line does not; returns the ones it set. */
export const tuneHeap = (
  execArgv: ReadonlyArray<string> = process.execArgv,
  cores: number = os.availableParallelism()
): ReadonlyArray<string> => {
  const flags = [
    ...(given(execArgv, "heap-growing-percent") ? [] : [`--heap-growing-percent=${heapGrowingPercent}`]),
    ...(cores <= serialScavengeUpToCores && !given(execArgv, "parallel-scavenge") ? ["--no-parallel-scavenge"] : [])
  ]
  for (const flag of flags) v8.setFlagsFromString(flag)
  return flags
}
