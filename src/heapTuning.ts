import * as v8 from "node:v8"

/**
 * The old generation's growth for a `cluster_mgr <cnf>` process (cli.ts; not for an app that
 * embeds a node: that process is the app's to tune). V8 lets the old generation grow up to four
 * times the live heap after each full collection while collections are cheap, and a node's live
 * heap is small (about 20 MB on the leader after a 10 s load at concurrency 64, from a heap
 * snapshot) while what it promotes under load is mostly short-lived (requests in flight): the
 * leader's old generation reached 65-80 MB, almost all garbage. Twice the live heap at most
 * (`--heap-growing-percent=100`) takes that off. Read by V8 at each collection, so it can be set
 * once the process runs, unlike the young generation's size; an operator's own
 * `--heap-growing-percent` on the command line wins.
 */
export const heapGrowingPercent = 100

export const tuneHeap = (execArgv: ReadonlyArray<string> = process.execArgv): boolean => {
  if (execArgv.some((a) => a.startsWith("--heap-growing-percent") || a.startsWith("--heap_growing_percent"))) return false
  v8.setFlagsFromString(`--heap-growing-percent=${heapGrowingPercent}`)
  return true
}
