/**
 * Jepsen-style chaos runs on real cluster_mgr processes.
 *
 *   npm run chaos -- --seed S [--nodes 3|5] [--duration 60s] [--clients N] [--kinds kill,pause,...]
 *       one run; its report goes to .chaos-failures/ if a checker fails.
 *   npm run chaos -- --runs N [--seed FIRST] [...]
 *       N runs with seeds FIRST, FIRST+1, ... (FIRST random when absent): the soak.
 *   npm run chaos -- --fuzz N [--seed S] [--nodes 3|5]
 *       N malformed or hostile requests to every node while faults run.
 *
 * Other flags: --cnf key=value,... (cnf keys for every node, e.g. raft_lease_read=true), --no-audit (skip `cluster_mgr audit verify`), --check-timeout MS (per
 * linearizability search), --save (write the report even for a passing run). A soak (--runs) goes on after a failure and lists the failed seeds.
 * Exit code 0 if every run passed, 1 otherwise, 2 for a usage error, 130 on SIGINT.
 * Every process started is killed by pid on exit, on failure and on SIGINT/SIGTERM.
 */
import { runFuzz } from "./fuzz.js"
import { allKinds, type NemesisKind } from "./nemesis.js"
import { killActive, runChaos } from "./run.js"

const usage =
  "usage: npm run chaos -- [--seed S] [--nodes 3|5] [--duration 60s] [--runs N] [--clients N] [--kinds k1,k2] [--cnf key=value,...] [--fuzz N] [--no-audit] [--check-timeout MS] [--save]"

const parseDuration = (text: string): number => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text)
  if (m === null) throw new Error(`--duration: expected e.g. 60s, 2m or 30000ms, got ${text}`)
  const n = Number(m[1])
  return m[2] === "ms" ? n : m[2] === "m" ? n * 60_000 : n * 1000
}

const parseArgs = (argv: ReadonlyArray<string>) => {
  const values = new Map<string, string>()
  const flags = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`)
    const name = a.slice(2)
    if (name === "no-audit" || name === "help" || name === "save") flags.add(name)
    else {
      const v = argv[++i]
      if (v === undefined) throw new Error(`--${name} needs a value`)
      values.set(name, v)
    }
  }
  const known = new Set(["seed", "nodes", "duration", "runs", "clients", "kinds", "fuzz", "check-timeout", "cnf"])
  for (const k of values.keys()) if (!known.has(k)) throw new Error(`unknown option --${k}`)
  const int = (name: string): number | undefined => {
    const v = values.get(name)
    if (v === undefined) return undefined
    const n = Number(v)
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${v}`)
    return n
  }
  const nodes = int("nodes") ?? 3
  if (nodes !== 3 && nodes !== 5) throw new Error("--nodes must be 3 or 5")
  const kinds = values.get("kinds")?.split(",").map((k) => k.trim()) as Array<NemesisKind> | undefined
  for (const k of kinds ?? []) if (!allKinds.includes(k)) throw new Error(`unknown nemesis kind ${k} (known: ${allKinds.join(", ")})`)
  const cnf: Record<string, string> = {}
  for (const pair of values.get("cnf")?.split(",") ?? []) {
    const [k, v] = pair.split("=")
    if (!k || v === undefined) throw new Error(`--cnf: expected key=value[,key=value], got ${pair}`)
    cnf[k.trim()] = v.trim()
  }
  return {
    help: flags.has("help"),
    cnf: Object.keys(cnf).length > 0 ? cnf : undefined,
    seed: int("seed"),
    nodes,
    durationMs: values.has("duration") ? parseDuration(values.get("duration")!) : 60_000,
    runs: int("runs"),
    clients: int("clients"),
    kinds,
    fuzz: int("fuzz"),
    checkTimeoutMs: int("check-timeout"),
    skipAudit: flags.has("no-audit"),
    save: flags.has("save")
  }
}

let interrupted = false
const onSignal = (signal: NodeJS.Signals) => {
  if (interrupted) return
  interrupted = true
  console.error(`\n${signal}: killing every node started...`)
  void killActive().finally(() => process.exit(130))
}
process.on("SIGINT", () => onSignal("SIGINT"))
process.on("SIGTERM", () => onSignal("SIGTERM"))

const main = async (): Promise<number> => {
  let args: ReturnType<typeof parseArgs>
  try {
    args = parseArgs(process.argv.slice(2))
  } catch (e) {
    console.error(`${(e as Error).message}\n${usage}`)
    return 2
  }
  if (args.help) {
    console.log(usage)
    return 0
  }
  const log = (line: string) => console.log(line)
  if (args.fuzz !== undefined) {
    const r = await runFuzz({ seed: args.seed ?? Math.floor(Math.random() * 1_000_000), requests: args.fuzz, nodes: args.nodes, kinds: args.kinds, log })
    return r.ok ? 0 : 1
  }
  const runs = args.runs ?? 1
  const first = args.seed ?? Math.floor(Math.random() * 1_000_000)
  const failed: Array<number> = []
  const started = Date.now()
  let totalOps = 0
  for (let i = 0; i < runs && !interrupted; i++) {
    const seed = first + i
    const r = await runChaos({
      seed,
      nodes: args.nodes,
      durationMs: args.durationMs,
      clients: args.clients,
      kinds: args.kinds,
      cnf: args.cnf,
      checkTimeoutMs: args.checkTimeoutMs,
      skipAudit: args.skipAudit,
      alwaysReport: args.save,
      log
    })
    totalOps += r.stats.ops
    if (!r.ok) {
      failed.push(seed)
      for (const f of r.findings.slice(0, 10)) {
        console.log(`  [${f.checker}] ${f.message.split("\n")[0]}`)
        for (const o of (f.ops ?? []).slice(0, 8)) console.log(`      ${o}`)
      }
    }
  }
  if (runs > 1) {
    console.log(
      `\n${runs} run(s) from seed ${first}: ${failed.length === 0 ? "all passed" : `FAILED seeds ${failed.join(", ")}`}; ${totalOps} operations; ${((Date.now() - started) / 60_000).toFixed(1)} min`
    )
  }
  return failed.length === 0 ? 0 : 1
}

main().then(
  async (code) => {
    await killActive()
    process.exit(code)
  },
  async (e) => {
    console.error(e)
    await killActive()
    process.exit(1)
  }
)
