import { describe, expect, it } from "vitest"
import { SimFailure } from "./invariants.js"
import { runSeed, type RunSummary } from "./scenario.js"

const seedCount = 300
// Small chunks: a test blocks its worker, and vitest times out a worker silent for too long.
const chunk = 10

/** Runs seeds [from, from + count); returns each failure's message (seed, step, invariant). */
const runSeeds = async (from: number, count: number, summaries: Array<RunSummary>): Promise<Array<string>> => {
  const failures: Array<string> = []
  for (let seed = from; seed < from + count; seed++) {
    // Let the worker's event loop breathe between seeds (vitest talks to it over RPC).
    await new Promise((resolve) => setImmediate(resolve))
    try {
      summaries.push(runSeed(seed))
    } catch (error) {
      failures.push(error instanceof SimFailure ? error.message : `seed ${seed}: ${String(error)}`)
    }
  }
  return failures
}

describe("deterministic fault simulation", () => {
  const summaries: Array<RunSummary> = []

  for (let from = 0; from < seedCount; from += chunk) {
    it(`seeds ${from}..${from + chunk - 1} keep every safety property and recover once healed`, async () => {
      expect(await runSeeds(from, chunk, summaries)).toEqual([])
    }, 120_000)
  }

  it("the seeds covered 3, 5 and 7 voters, crashes, snapshots installs, membership changes and transfers", () => {
    expect(new Set(summaries.map((s) => s.options.voters))).toEqual(new Set([3, 5, 7]))
    const total = (f: (s: RunSummary) => number) => summaries.reduce((n, s) => n + f(s), 0)
    const done = (x: string) => Number(x.split("/")[0])
    expect(total((s) => s.crashes)).toBeGreaterThan(seedCount)
    expect(total((s) => s.snapshotsInstalled)).toBeGreaterThan(seedCount)
    expect(total((s) => done(s.confChanges))).toBeGreaterThan(seedCount)
    expect(total((s) => done(s.transfers))).toBeGreaterThan(seedCount / 2)
    expect(total((s) => done(s.reads))).toBeGreaterThan(seedCount)
  })

  it("replaying a seed gives the identical trace", () => {
    const replay = (seed: number) => {
      const lines: Array<string> = []
      let outcome: string
      try {
        outcome = runSeed(seed, {}, { log: (l) => lines.push(l), traceSink: (l) => lines.push(l) }).trace
      } catch (error) {
        outcome = String(error)
      }
      return { lines, outcome }
    }
    const a = replay(7)
    const b = replay(7)
    expect(a.lines.length).toBeGreaterThan(1000)
    expect(b.lines).toEqual(a.lines)
    expect(b.outcome).toEqual(a.outcome)
    expect(replay(8).lines).not.toEqual(a.lines)
  })
})
