/**
 * The simulator's command line.
 *
 *   npm run sim -- --seed S [--trace] [--ticks T] [--voters N] [--storage memory|sqlite]
 *       replays one seed exactly: same output every time (--trace prints every event).
 *   npm run sim -- --seeds N [--from K] [...]
 *       runs seeds K..K+N-1, prints a summary and the failing seeds.
 *
 * Each failing seed's report goes to .sim-failures/seed-S.txt. Exit codes: 0 ok, 1 safety,
 * 2 liveness, 3 crash (an exception); with several failures the most severe (lowest) wins.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { exitCodeOf, SimFailure } from "./invariants.js"
import { describeOptions, describeSummary, drawOptions, type RunOverrides, runSeed } from "./scenario.js"

interface Args {
  readonly seed: number | undefined
  readonly seeds: number
  readonly from: number
  readonly trace: boolean
  readonly overrides: RunOverrides
}

const usage = "usage: npm run sim -- (--seed S [--trace] | --seeds N [--from K]) [--ticks T] [--voters N] [--storage memory|sqlite]"

const parseArgs = (argv: ReadonlyArray<string>): Args => {
  const values = new Map<string, string>()
  const flags = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}\n${usage}`)
    const name = a.slice(2)
    if (name === "trace") flags.add(name)
    else {
      const v = argv[++i]
      if (v === undefined) throw new Error(`--${name} needs a value\n${usage}`)
      values.set(name, v)
    }
  }
  const int = (name: string): number | undefined => {
    const v = values.get(name)
    if (v === undefined) return undefined
    const n = Number(v)
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${v}`)
    return n
  }
  const storage = values.get("storage")
  if (storage !== undefined && storage !== "memory" && storage !== "sqlite") throw new Error(`--storage must be memory or sqlite\n${usage}`)
  const seed = int("seed")
  const seeds = int("seeds")
  if ((seed === undefined) === (seeds === undefined)) throw new Error(usage)
  return {
    seed,
    seeds: seeds ?? 1,
    from: int("from") ?? 0,
    trace: flags.has("trace"),
    overrides: { ticks: int("ticks"), voters: int("voters"), storage }
  }
}

const reportDir = ".sim-failures"

const writeReport = (seed: number, overrides: RunOverrides, error: unknown): string => {
  mkdirSync(reportDir, { recursive: true })
  const path = join(reportDir, `seed-${seed}.txt`)
  const flags = [
    overrides.ticks !== undefined ? ` --ticks ${overrides.ticks}` : "",
    overrides.voters !== undefined ? ` --voters ${overrides.voters}` : "",
    overrides.storage !== undefined ? ` --storage ${overrides.storage}` : ""
  ].join("")
  const lines = [
    `replay: npm run sim -- --seed ${seed}${flags} --trace`,
    describeOptions(drawOptions(seed, overrides)),
    "",
    error instanceof Error ? (error.stack ?? error.message) : String(error),
    ...(error instanceof SimFailure && error.cause instanceof Error ? ["", "cause:", error.cause.stack ?? ""] : []),
    "",
    "last events:",
    ...(error instanceof SimFailure ? error.recent : [])
  ]
  writeFileSync(path, `${lines.join("\n")}\n`)
  return path
}

const runOne = (args: Args, seed: number): number => {
  try {
    const summary = runSeed(seed, args.overrides, {
      log: (line) => console.log(line),
      traceSink: args.trace ? (line) => console.log(line) : undefined
    })
    console.log(describeSummary(summary))
    return 0
  } catch (error) {
    const code = exitCodeOf(error)
    console.log(error instanceof Error ? error.message : String(error))
    if (!args.trace && error instanceof SimFailure) for (const line of error.recent.slice(-40)) console.log(`  ${line}`)
    console.log(`report: ${writeReport(seed, args.overrides, error)}`)
    return code
  }
}

const runMany = (args: Args): number => {
  const failures: Array<{ seed: number; code: number; message: string }> = []
  const started = performance.now()
  let worst = 0
  for (let seed = args.from; seed < args.from + args.seeds; seed++) {
    try {
      const s = runSeed(seed, args.overrides)
      console.log(`seed ${seed}: ok voters=${s.options.voters} ticks=${s.ticks} elections=${s.elections} commits=${s.commits} snapshots=${s.snapshotsInstalled} crashes=${s.crashes} conf=${s.confChanges} transfers=${s.transfers}`)
    } catch (error) {
      const code = exitCodeOf(error)
      const message = error instanceof Error ? error.message : String(error)
      failures.push({ seed, code, message })
      worst = worst === 0 ? code : Math.min(worst, code)
      console.log(`seed ${seed}: FAILED (${code}) ${message}`)
      console.log(`  report: ${writeReport(seed, args.overrides, error)}`)
    }
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  console.log(`\n${args.seeds} seeds from ${args.from}: ${args.seeds - failures.length} passed, ${failures.length} failed in ${seconds}s`)
  if (failures.length > 0) console.log(`failing seeds: ${failures.map((f) => `${f.seed}(${f.code})`).join(" ")}`)
  return worst
}

const main = (): number => {
  let args: Args
  try {
    args = parseArgs(process.argv.slice(2))
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error))
    return 64
  }
  return args.seed !== undefined ? runOne(args, args.seed) : runMany(args)
}

process.exitCode = main()
