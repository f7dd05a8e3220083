import { describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { heapGrowingPercent, serialScavengeUpToCores, tuneHeap } from "../src/heapTuning.js"

/** What V8 says on standard error when a process sets `flag` at run time. */
const stderrOf = (flag: string): string =>
  spawnSync(process.execPath, ["-e", `require("node:v8").setFlagsFromString(${JSON.stringify(flag)})`], { encoding: "utf8" }).stderr

const growth = `--heap-growing-percent=${heapGrowingPercent}`
const many = serialScavengeUpToCores + 6

describe("tuneHeap", () => {
  it("caps the old generation's growth unless an operator set it on the command line", () => {
    expect(tuneHeap([], many)).toEqual([growth])
    expect(tuneHeap(["--heap-growing-percent=30"], many)).toEqual([])
    expect(tuneHeap(["--heap_growing_percent=30"], many)).toEqual([])
    expect(tuneHeap(["--max-semi-space-size=4"], many)).toEqual([growth])
  })

  it("scavenges on one thread on a host of at most two cores, unless the command line says otherwise", () => {
    expect(tuneHeap([], 1)).toEqual([growth, "--no-parallel-scavenge"])
    expect(tuneHeap([], serialScavengeUpToCores)).toEqual([growth, "--no-parallel-scavenge"])
    expect(tuneHeap([], serialScavengeUpToCores + 1)).toEqual([growth])
    expect(tuneHeap(["--parallel-scavenge"], 2)).toEqual([growth])
    expect(tuneHeap(["--parallel_scavenge"], 2)).toEqual([growth])
    expect(tuneHeap(["--no-parallel-scavenge", "--heap-growing-percent=0"], 2)).toEqual([])
  })

  it("sets only flags this V8 knows (an unknown one is refused on standard error, and ignored)", () => {
    expect(stderrOf("--no-such-heap-flag=1")).toMatch(/unrecognized flag/)
    for (const flag of tuneHeap([], 1)) expect(stderrOf(flag)).toBe("")
  })

  it("the serial scavenger takes effect when set at run time (no helper thread's share in V8's GC trace)", () => {
    const script = "require('node:v8').setFlagsFromString('--no-parallel-scavenge'); const keep = [];" +
      " for (let i = 0; i < 1e6; i++) { const x = { i, s: 's' + i }; if (i % 8 === 0) keep.push(x); if (keep.length > 20000) keep.length = 0 }"
    const helperMs = spawnSync(process.execPath, ["--trace-gc-nvp", "-e", script], { encoding: "utf8" }).stdout
      .split("\n")
      .filter((line) => line.includes("gc=s"))
      .map((line) => Number(/background\.scavenge\.parallel=([\d.]+)/.exec(line)?.[1] ?? NaN))
    expect(helperMs.length).toBeGreaterThan(0)
    expect(helperMs.every((ms) => ms === 0)).toBe(true)
  })
})
