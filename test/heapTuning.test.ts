import { describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { heapGrowingPercent, tuneHeap } from "../src/heapTuning.js"

/** What V8 says on standard error when a process sets `flag` at run time. */
const stderrOf = (flag: string): string =>
  spawnSync(process.execPath, ["-e", `require("node:v8").setFlagsFromString(${JSON.stringify(flag)})`], { encoding: "utf8" }).stderr

describe("tuneHeap", () => {
  it("leaves the old generation's growth to an operator who set it on the command line", () => {
    expect(tuneHeap(["--heap-growing-percent=30"])).toBe(false)
    expect(tuneHeap(["--heap_growing_percent=30"])).toBe(false)
    expect(tuneHeap(["--max-semi-space-size=4"])).toBe(true)
  })

  it("sets a flag this V8 knows (an unknown one is refused on standard error, and ignored)", () => {
    expect(stderrOf("--no-such-heap-flag=1")).toMatch(/unrecognized flag/)
    expect(stderrOf(`--heap-growing-percent=${heapGrowingPercent}`)).toBe("")
  })
})
