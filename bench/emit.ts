/**
 * `npm run bench -- emit`: cluster_mgr beside etcd on the same machine, same load generator.
 *
 * 1. A real 3-process cluster_mgr group on 127.0.0.1 (free ports, temp data dirs, default
 *    settings: fsync on). Closed-loop clients over HTTP keep-alive at concurrency 1, 16, 64 for
 *    BENCH_SECONDS (default 5) each: Emit raft_mission transfer_leader jobs naming the current
 *    leader, counting replies with status "accept" (the job is committed before that reply). A
 *    transfer to the leader itself is done at acceptance: one log entry per job, as a put is
 *    one for etcd.
 * 2. Failover: at concurrency 16, kill -9 the leader BENCH_KILLS times (default 10), timing
 *    kill -> first accepted job sent after the kill and accepted by a survivor; the killed node
 *    is restarted and has rejoined before the next kill.
 * 3. The same against a 3-member etcd (Debian's etcd-server, installed when missing, default
 *    settings): puts through the HTTP/JSON gateway, unique keys, 100-byte values.
 * 4. Operations (bench/ops.ts), each system on a fresh group after its run above:
 *    transfer_leader Emit -> get_status done (BENCH_TRANSFERS, default 20; etcd: the
 *    transfer-leadership call), failover when the leader is paused with SIGSTOP under load at
 *    concurrency 16 (BENCH_PAUSES, default 5; target: election timeout + 2 heartbeats from the
 *    cnf defaults), then BENCH_FILL accepted jobs (default 100000; puts for etcd) and on that
 *    group: a follower restarted after SIGTERM and after kill -9 (spawn -> serves status), and
 *    (cluster_mgr) add_peer of a 4th node on an empty data directory, Emit -> done.
 * 5. Throughput rounds 2..BENCH_ROUNDS (default 3): a fresh group of each system in turn, warmed
 *    up, the levels again; the table gives each level's median over the rounds.
 * 6. One table (bench/table.ts): figure, cluster_mgr, etcd, ratio, target (issue 7); RSS per
 *    process just started, idle (BENCH_IDLE_SECONDS after the election) and at concurrency 64; time from spawn until a node serves status.
 *
 * The nodes run the bundled build through bin/cluster_mgr.mjs, as `npx cluster_mgr` does (the
 * bench runs `npm run build` first when the bundle is missing or older than src/).
 *
 * Every spawned process is killed by pid on exit (also on errors, SIGINT and a watchdog).
 *
 * Knobs (env): BENCH_SECONDS, BENCH_WARMUP_SECONDS (default 5: load at c=16 before the first level, not counted), BENCH_ROUNDS (default 3), BENCH_KILLS (0: no failover), BENCH_LEVELS ("1,16,64"),
 * BENCH_IDLE_SECONDS (default 30: when idle RSS is read, after the election), BENCH_ETCD=0 (skip etcd), BENCH_OPS=0 (skip the operations), BENCH_TRANSFERS, BENCH_PAUSES,
 * BENCH_FILL (accepted jobs, one log entry each; the restart and add_peer rows name the index
 * they ran at, a little above it after the leader changes of the operations: BENCH_FILL=1000000
 * puts add_peer behind over 1,000,000 entries), and for experiments on cluster_mgr:
 * BENCH_KEEP_DIRS=1 (keep the data directories and the nodes' logs; each pause line gives the
 * SIGSTOP's wall-clock time to find it there), BENCH_CM_CNF ("key=value,..." appended to each cnf), BENCH_CM_NODE_ARGS (node flags, e.g.
 * "--cpu-prof --cpu-prof-dir=D"), BENCH_CM_BIN (another checkout's bin/cluster_mgr.mjs, for A/B
 * runs).
 */
import * as os from "node:os"
import * as fs from "node:fs"
import { keepAliveAgent, type LoadResult, runLoad, sleep, startLoad } from "./loadgen.js"
import { installCleanup, kill9, killAndWait, median, pssMb, removeDir, rssMb } from "./procs.js"
import { FILL, measureOps, OPS, opsNotes, opsRows, type OpsFigures, opsWatchdogMs, PAUSES, TRANSFERS } from "./ops.js"
import { fmt, msRow, renderTable, type Row } from "./table.js"
import { ClusterMgr, cmRunsBundle, ensureCmBundle, Etcd, ensureEtcd, type System, waitLeader, waitRejoined, waitStableLeader } from "./systems.js"

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const KILLS = Number(process.env.BENCH_KILLS ?? 10)
const LEVELS = (process.env.BENCH_LEVELS ?? "1,16,64").split(",").map(Number)
const FAILOVER_CONCURRENCY = 16
const WARMUP_MS = Math.min(1000, SECONDS * 200)
/**
 * Load at c=16 before the first level, for both systems: cluster_mgr runs on a JIT, and a node
 * measured in its first seconds spends more CPU compiling than serving (c=1 doubled after it).
 * A control plane runs for months; its steady state is the figure.
 */
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 5)
/**
 * Throughput rounds per system (default 3). The first is part of `measure`; each further round
 * starts a fresh group of each system in turn (cluster_mgr, then etcd), warms it up and runs the
 * levels again. The table gives each level's median over the rounds: this VM's speed drifts by
 * up to a quarter from one minute to the next, and a single run of each system, one after the
 * other, compared whatever the VM did in between.
 */
const ROUNDS = Math.max(1, Math.trunc(Number(process.env.BENCH_ROUNDS ?? 3)))
/**
 * When "idle" RSS is read, in seconds after the election (at least 2). A node's heap still holds
 * start-up's garbage for the first seconds: V8's memory reducer collects it about 8 s after the
 * last full collection, and a 3-node group measured every few seconds over two minutes sat at
 * 83-88 MB before that and 71-78 MB from 30 s on. The 2 s reading is kept as "just started".
 */
const IDLE_SETTLE_SECONDS = Math.max(2, Number(process.env.BENCH_IDLE_SECONDS ?? 30))
/** Worst case per kill: 60 s for a stable leader, 20 s each for the first accept and the new leader, 60 s for the restart, 30 s for the rejoin. */
/** The operations figures (bench/ops.ts) get their own worst case on top. */
installCleanup(
  (2 * ROUNDS * (LEVELS.length * (SECONDS + 2) + WARMUP_SECONDS + 60) + 2 * IDLE_SETTLE_SECONDS + 2 * KILLS * 200 + 600) * 1000 + opsWatchdogMs()
)

const clkTck = 100
/** CPU seconds (user + system) a process has used, from /proc/PID/stat. */
const cpuSeconds = (pid: number): number => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return (Number(fields[11]) + Number(fields[12])) / clkTck
  } catch {
    return NaN
  }
}
const load1 = (): string => os.loadavg()[0].toFixed(2)

interface SystemFigures {
  /** Per level, one result per throughput round. */
  levels: Map<number, Array<LoadResult>>
  /** CPU cores used by the three servers and by this (client) process at each level. */
  cpu: Map<number, { servers: number; client: number }>
  failover: Array<number>
  failoverMissed: number
  /** Per kill: the longest time without an accepted reply, from the kill until the victim rejoined. */
  stalls: Array<number>
  startMs: Array<number>
  restartMs: Array<number>
  restartIndex: Array<number>
  /** 2 s after the election: start-up's garbage is still in the heap. */
  rssStarted: Array<number>
  /** IDLE_SETTLE_SECONDS after the election, before any load. */
  rssIdle: Array<number>
  rssLoad: Array<number>
  rssAfter: Array<number>
}

const emptyFigures = (): SystemFigures => ({
  levels: new Map(),
  cpu: new Map(),
  failover: [],
  failoverMissed: 0,
  stalls: [],
  startMs: [],
  restartMs: [],
  restartIndex: [],
  rssStarted: [],
  rssIdle: [],
  rssLoad: [],
  rssAfter: []
})

const pidsOf = (sys: System): Array<number> => sys.nodes.map((n) => n.proc?.pid ?? -1)
const rssAll = (sys: System): Array<number> => pidsOf(sys).map(rssMb)
const pssAll = (sys: System): string => pidsOf(sys).map((pid) => fmt(pssMb(pid))).join(" / ")

const printFailures = (sys: System): void => {
  const failures = sys.takeFailures()
  if (failures.length === 0) return
  console.log(`    failed requests by reason: ${failures.slice(0, 5).map(([r, n]) => `${n} x ${r}`).join("; ")}`)
}

/** Warm-up, then each level of LEVELS on `sys`'s running group; adds one round to `f`. */
const runLevels = async (sys: System, send: ReturnType<System["makeSend"]>, f: SystemFigures): Promise<void> => {
  if (WARMUP_SECONDS > 0) {
    const w = await runLoad({ concurrency: 16, send, durationMs: WARMUP_SECONDS * 1000, warmupMs: 0 }, () => {})
    console.log(`  warm-up: ${w.ok} accepted at c=16 in ${WARMUP_SECONDS} s (not counted)`)
    await sleep(1000)
  }
  sys.takeFailures()
  for (const c of LEVELS) {
    const pids = pidsOf(sys)
    let cpuBefore: Array<number> = []
    let clientBefore = 0
    let started = 0
    const rssMax = pids.map(() => 0)
    const result = await runLoad({ concurrency: c, send, durationMs: SECONDS * 1000, warmupMs: WARMUP_MS }, () => {
      if (started === 0) {
        // First callback (~200 ms in): CPU counters from here to the end.
        started = performance.now()
        cpuBefore = pids.map(cpuSeconds)
        const u = process.cpuUsage()
        clientBefore = (u.user + u.system) / 1e6
      }
      if (c === Math.max(...LEVELS)) pids.forEach((pid, i) => (rssMax[i] = Math.max(rssMax[i], rssMb(pid))))
    })
    const wall = (performance.now() - started) / 1000
    const servers = pids.map(cpuSeconds).reduce((s, x, i) => s + x - cpuBefore[i], 0) / wall
    const u = process.cpuUsage()
    const client = ((u.user + u.system) / 1e6 - clientBefore) / wall
    f.levels.set(c, [...(f.levels.get(c) ?? []), result])
    // CPU and RSS under load: the first round's, whose group then serves the kills.
    if (!f.cpu.has(c)) f.cpu.set(c, { servers, client })
    if (c === Math.max(...LEVELS) && f.rssLoad.length === 0) f.rssLoad = rssMax
    console.log(
      `  c=${String(c).padStart(2)}: ${fmt(result.rps, 0).padStart(6)} req/s  p50 ${fmt(result.p50, 2)} ms  p99 ${fmt(result.p99, 2)} ms  ` +
        `max ${fmt(result.max, 1)} ms  (ok ${result.ok}, failed ${result.failed}; CPU: servers ${fmt(servers, 2)} cores, client ${fmt(client, 2)}; load ${load1()})`
    )
    printFailures(sys)
  }
}

/** One more throughput round (see ROUNDS) on a fresh group of `sys`: start, warm-up, levels, stop. */
const throughputRound = async (make: (agent: ReturnType<typeof keepAliveAgent>) => System, round: number, f: SystemFigures): Promise<void> => {
  const agent = keepAliveAgent()
  const sys = make(agent)
  console.log(`\n== ${sys.name}: throughput round ${round} of ${ROUNDS}, a fresh group`)
  try {
    await sys.start()
    await waitLeader(sys, 30_000)
    await runLevels(sys, sys.makeSend(agent), f)
  } finally {
    agent.destroy()
    await sys.stop()
    removeDir(sys.dir)
  }
}

const measure = async (sys: System): Promise<SystemFigures> => {
  const f = emptyFigures()
  const agent = keepAliveAgent()
  console.log(`\n== ${sys.name}: starting 3 nodes`)
  f.startMs = await sys.start()
  const leader = await waitLeader(sys, 30_000)
  console.log(
    `  serving after ${f.startMs.map((ms) => fmt(ms, 0)).join(" / ")} ms from spawn; leader ${leader.name} (${leader.address}); pids ${pidsOf(sys).join(" ")}`
  )
  const elected = Date.now()
  await sleep(2000)
  f.rssStarted = rssAll(sys)
  console.log(`  RSS just started (2 s after the election): ${f.rssStarted.map((r) => fmt(r)).join(" / ")} MB (PSS ${pssAll(sys)} MB)`)
  await sleep(Math.max(0, elected + IDLE_SETTLE_SECONDS * 1000 - Date.now()))
  f.rssIdle = rssAll(sys)
  console.log(`  RSS idle (${IDLE_SETTLE_SECONDS} s after the election): ${f.rssIdle.map((r) => fmt(r)).join(" / ")} MB (PSS ${pssAll(sys)} MB)`)

  const send = sys.makeSend(agent)
  await runLevels(sys, send, f)
  if (f.rssLoad.length > 0) console.log(`  RSS at c=${Math.max(...LEVELS)} (max sampled): ${f.rssLoad.map((r) => fmt(r)).join(" / ")} MB`)
  await sleep(2000)
  f.rssAfter = rssAll(sys)
  console.log(`  RSS idle after load: ${f.rssAfter.map((r) => fmt(r)).join(" / ")} MB (PSS ${pssAll(sys)} MB)`)

  if (KILLS > 0) {
    console.log(`  failover: kill -9 the leader ${KILLS} times under load at c=${FAILOVER_CONCURRENCY}`)
    const load = startLoad({ concurrency: FAILOVER_CONCURRENCY, send })
    await sleep(1000)
    for (let i = 1; i <= KILLS; i++) {
      // Kill a leader that has held for a second and still leads right now.
      let victim = await waitStableLeader(sys, 1000, 60_000)
      while (!(await sys.probe(victim))?.leader) victim = await waitStableLeader(sys, 1000, 60_000)
      const proc = victim.proc!
      const t0 = performance.now()
      kill9(proc.pid)
      const first = await load.firstSuccess(t0, (s) => s.by !== victim.address, 20_000)
      await killAndWait(proc)
      const newLeader = await waitLeader(sys, 20_000)
      const index = (await sys.probe(newLeader))?.index ?? 0
      const restartMs = await sys.restart(victim)
      const rejoined = await waitRejoined(sys, victim, index, 30_000)
      const stall = load.longestGap(t0, performance.now())
      f.restartMs.push(restartMs)
      f.restartIndex.push(index)
      f.stalls.push(stall)
      if (first === undefined) f.failoverMissed++
      else f.failover.push(first.doneAt - t0)
      const failures = sys.takeFailures()
      console.log(
        `    kill ${String(i).padStart(2)}: ${victim.name} -> first accept ${first ? `${fmt(first.doneAt - t0, 0)} ms at ${first.by}` : "none within 20 s"}; ` +
          `new leader ${newLeader.name}; restarted, serving after ${fmt(restartMs, 0)} ms, rejoined at index ${rejoined.index}; ` +
          `longest stall ${fmt(stall, 0)} ms; ${failures.reduce((n, [, c]) => n + c, 0)} failed requests (load ${load1()})`
      )
      for (const [reason, n] of failures.slice(0, 2)) console.log(`        ${n} x ${reason}`)
    }
    const r = await load.stop()
    console.log(`  during failover: ${r.ok} accepted, ${r.failed} failed requests`)
    printFailures(sys)
  }
  agent.destroy()
  await sys.stop()
  removeDir(sys.dir)
  return f
}

// ------------------------------------------------------------------------------------ table

/** A level's figures over the rounds: the median of each (rps, p50, p99 taken separately). */
const medianLevel = (f: SystemFigures, c: number): { rps: number; p50: number; p99: number } | undefined => {
  const rs = f.levels.get(c)
  if (rs === undefined || rs.length === 0) return undefined
  return { rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)) }
}

const printTable = (
  ours: SystemFigures,
  etcd: SystemFigures | undefined,
  etcdVersion: string,
  oursOps: OpsFigures | undefined,
  etcdOps: OpsFigures | undefined
): void => {
  const rows: Array<Row> = []
  const atLeast = (x: number) => (_o: number, _t: number | undefined, r: number | undefined) => (r === undefined ? undefined : r >= x)
  for (const c of LEVELS) {
    const o = medianLevel(ours, c)!
    const t = etcd === undefined ? undefined : medianLevel(etcd, c)
    const tp = c === 1 ? 1.2 : 1.5
    rows.push({ figure: `accepted req/s, c=${c}${ROUNDS > 1 ? ` (median of ${ROUNDS} rounds)` : ""}`, ours: o.rps, theirs: t?.rps, unit: "/s", better: "higher", target: `>= ${tp}x etcd`, met: atLeast(tp), digits: 0 })
    rows.push({ figure: `p50 latency, c=${c}`, ours: o.p50, theirs: t?.p50, unit: "ms", better: "lower", target: "—", digits: 2 })
    rows.push({
      figure: `p99 latency, c=${c}`,
      ours: o.p99,
      theirs: t?.p99,
      unit: "ms",
      better: "lower",
      target: c === 1 ? "—" : "<= etcd's",
      met: c === 1 ? undefined : atLeast(1),
      digits: 2
    })
  }
  /** One statistic of a per-kill list, undefined when the system has none. */
  const of = (f: SystemFigures | undefined, xs: (f: SystemFigures) => Array<number>, by: (xs: Array<number>) => number) =>
    f === undefined || xs(f).length === 0 ? undefined : by(xs(f))
  const min = (xs: Array<number>) => Math.min(...xs)
  const max = (xs: Array<number>) => Math.max(...xs)
  if (KILLS > 0) {
    const n = `${ours.failover.length}/${KILLS} kills${ours.failoverMissed ? `, ${ours.failoverMissed} without an accept in 20 s` : ""}`
    const failover = (f: SystemFigures) => f.failover
    const stalls = (f: SystemFigures) => f.stalls
    rows.push(
      msRow(`failover min (${n})`, of(ours, failover, min), of(etcd, failover, min)),
      msRow("failover median", of(ours, failover, median), of(etcd, failover, median), "<= 300 ms (20 kills)", (o) => o <= 300),
      msRow("failover max", of(ours, failover, max), of(etcd, failover, max), "<= 600 ms (20 kills)", (o) => o <= 600 && ours.failoverMissed === 0),
      msRow("longest stall per kill, until rejoined (median)", of(ours, stalls, median), of(etcd, stalls, median)),
      msRow("longest stall per kill (max)", of(ours, stalls, max), of(etcd, stalls, max))
    )
  }
  const maxOf = (xs: Array<number> | undefined) => (xs === undefined || xs.length === 0 ? undefined : Math.max(...xs))
  // The smallest node is a follower, which never starts the raft.db writer thread (RaftLog.ts).
  const minOf = (xs: Array<number> | undefined) => (xs === undefined || xs.length === 0 ? undefined : Math.min(...xs))
  const top = Math.max(...LEVELS)
  for (const [which, pick] of [["max", maxOf], ["min of 3", minOf]] as const) {
    rows.push({ figure: `RSS per node idle, ${IDLE_SETTLE_SECONDS} s (${which === "max" ? "max of 3" : which})`, ours: pick(ours.rssIdle)!, theirs: pick(etcd?.rssIdle), unit: "MB", better: "lower", target: "<= 60 MB", met: (o) => o <= 60 })
    rows.push({ figure: `RSS per node at c=${top} (${which})`, ours: pick(ours.rssLoad) ?? NaN, theirs: pick(etcd?.rssLoad), unit: "MB", better: "lower", target: "<= 100 MB", met: (o) => o <= 100 })
  }
  rows.push({ figure: "RSS per node just started, 2 s (max)", ours: maxOf(ours.rssStarted)!, theirs: maxOf(etcd?.rssStarted), unit: "MB", better: "lower", target: "—" })
  rows.push({ figure: "RSS per node idle after load (max)", ours: maxOf(ours.rssAfter)!, theirs: maxOf(etcd?.rssAfter), unit: "MB", better: "lower", target: "—" })
  rows.push(msRow("spawn -> serves status, empty dir (median of 3)", median(ours.startMs), etcd ? median(etcd.startMs) : undefined))
  if (ours.restartMs.length > 0) {
    const idx = Math.round(median(ours.restartIndex))
    const restarts = (f: SystemFigures) => f.restartMs
    rows.push(
      msRow(`spawn -> serves status, restart (median; ~${idx} entries)`, median(ours.restartMs), of(etcd, restarts, median), "<= 1000 ms (100,000 events)", (o) => o <= 1000),
      msRow("spawn -> serves status, restart (max)", Math.max(...ours.restartMs), of(etcd, restarts, max))
    )
  }
  if (oursOps !== undefined) rows.push(...opsRows(oursOps, etcdOps))

  const table = renderTable(rows, etcd !== undefined)
  console.log(`\n== emit bench: 3 nodes on 127.0.0.1, fsync on, ${SECONDS} s per level, client in this process`)
  console.log(
    `   machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), node ${process.version}, ${etcd ? etcdVersion : "etcd unavailable"}; load average now ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`
  )
  console.log("   ratio: ours/etcd for req/s; etcd/ours for latency, failover, RSS and start times (above 1: cluster_mgr better)")
  for (const l of table) console.log(l)
  const cpuLine = (name: string, f: SystemFigures | undefined) =>
    f === undefined
      ? ""
      : `   CPU (cores) ${name}: ${LEVELS.map((c) => `c=${c} servers ${fmt(f.cpu.get(c)!.servers, 2)} client ${fmt(f.cpu.get(c)!.client, 2)}`).join("; ")}`
  const mbs = (xs: Array<number>) => xs.map((x) => fmt(x)).join(" / ")
  console.log(
    `   RSS per cluster_mgr process (MB): just started ${mbs(ours.rssStarted)}; idle ${mbs(ours.rssIdle)}; at c=${Math.max(...LEVELS)} ${mbs(ours.rssLoad)}; idle after load ${mbs(ours.rssAfter)}`
  )
  console.log(
    `   spawn -> serves /status (ms): first start ${ours.startMs.map((x) => fmt(x, 0)).join(" / ")}; restarts ${ours.restartMs.map((x) => fmt(x, 0)).join(" ")}`
  )
  const roundsLine = (name: string, f: SystemFigures | undefined) =>
    f === undefined
      ? ""
      : `   rounds (req/s, p99 ms) ${name}: ${LEVELS.map((c) => `c=${c} ${(f.levels.get(c) ?? []).map((r) => `${fmt(r.rps, 0)} (${fmt(r.p99, 1)})`).join(", ")}`).join("; ")}`
  console.log(roundsLine("cluster_mgr", ours))
  if (etcd) console.log(roundsLine("etcd", etcd))
  console.log(cpuLine("cluster_mgr", ours))
  if (etcd) console.log(cpuLine("etcd", etcd))
  if (oursOps !== undefined) for (const l of opsNotes(oursOps, etcdOps)) console.log(l)
}

// ------------------------------------------------------------------------------------- main

console.log(
  `emit bench: ${SECONDS} s per level at concurrency ${LEVELS.join(", ")}, ${KILLS} leader kills at c=${FAILOVER_CONCURRENCY}; ` +
    (OPS ? `operations: ${TRANSFERS} transfers, ${PAUSES} leader pauses, restarts and add_peer behind ${FILL} jobs; ` : "operations skipped (BENCH_OPS=0); ") +
    `${os.cpus().length} cores, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`
)
ensureCmBundle()
const agent = keepAliveAgent()
const ours = await measure(new ClusterMgr(agent))
const oursOps = OPS ? await measureOps(new ClusterMgr(agent), agent) : undefined
agent.destroy()
// A node started after src/ changed (a failover restart) ran the sources through tsx instead.
const cmStaleAtEnd = !cmRunsBundle()

const etcdAgent = keepAliveAgent()
const etcdBin = process.env.BENCH_ETCD === "0" ? undefined : ensureEtcd()
let theirs: SystemFigures | undefined
let theirsOps: OpsFigures | undefined
let etcdVersion = ""
if (etcdBin === undefined) {
  console.log(process.env.BENCH_ETCD === "0" ? "etcd skipped (BENCH_ETCD=0)" : "etcd is unavailable: its rows are skipped")
} else {
  const etcd = new Etcd(etcdAgent, etcdBin)
  etcdVersion = etcd.version()
  try {
    theirs = await measure(etcd)
  } catch (e) {
    console.log(`etcd run failed (${(e as Error).message}); its rows are skipped`)
    for (const n of etcd.nodes) {
      const log = fs.existsSync(n.logFile) ? fs.readFileSync(n.logFile, "utf8").trim().split("\n").slice(-3) : []
      console.log(`  ${n.name} log tail:\n${log.map((l) => `    ${l}`).join("\n")}`)
    }
    await etcd.stop()
  }
  if (theirs !== undefined && OPS) theirsOps = await measureOps(new Etcd(etcdAgent, etcdBin), etcdAgent)
}
// Further throughput rounds, the systems in turn (see ROUNDS).
for (let round = 2; round <= ROUNDS; round++) {
  await throughputRound((a) => new ClusterMgr(a), round, ours)
  if (theirs !== undefined && etcdBin !== undefined) {
    const bin = etcdBin
    try {
      await throughputRound((a) => new Etcd(a, bin), round, theirs)
    } catch (e) {
      console.log(`etcd round ${round} failed (${(e as Error).message}); its figures are the other rounds'`)
    }
  }
}
etcdAgent.destroy()
printTable(ours, theirs, etcdVersion, oursOps, theirsOps)
if (cmStaleAtEnd) console.log("   WARNING: src/ changed during the cluster_mgr run: nodes started after that ran through tsx (figures not the bundle's)")
process.exit(0)
