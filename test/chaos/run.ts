import * as fs from "node:fs"
import * as path from "node:path"
import { request, sleep, waitForLeader } from "../integration/harness.js"
import { Prng } from "../sim/prng.js"
import {
  checkDurable,
  checkFinalReads,
  checkIds,
  checkJobs,
  checkLeaders,
  checkRegistry,
  type Finding,
  leaderClaimsFromLog,
  leaderClaimsFromSamples,
  type LinearizabilityReport,
  resolve
} from "./checks.js"
import { ChaosCluster } from "./cluster.js"
import { describeOp, Recorder } from "./history.js"
import { type AuditResult, auditVerify, compareJournals, type JournalDump, readJournal } from "./journal.js"
import { allKinds, Nemesis, type NemesisKind } from "./nemesis.js"
import { Workload } from "./workload.js"

/**
 * One chaos run: start the nodes, run clients and the nemesis for the duration, heal, measure
 * availability, read every job back, stop the nodes and check the history and the data dirs.
 * Everything started is killed by pid in a finally block (and on SIGINT, through `active`).
 */

export interface ChaosOptions {
  readonly seed: number
  readonly nodes: number
  readonly durationMs: number
  readonly clients?: number
  /** Membership churn with a spare node: drawn from the seed when undefined. */
  readonly spare?: boolean
  readonly kinds?: ReadonlyArray<NemesisKind>
  /** cnf keys set on every node, over the drawn settings (e.g. raft_lease_read: "true"). */
  readonly cnf?: Readonly<Record<string, string>>
  /** Failure reports go under this directory (default .chaos-failures). */
  readonly reportDir?: string
  /** Time limit of each linearizability search. */
  readonly checkTimeoutMs?: number
  /** Skip `cluster_mgr audit verify` (it costs a process per node). */
  readonly skipAudit?: boolean
  /** Write the report (timeline, history, logs) even when every checker passes. */
  readonly alwaysReport?: boolean
  readonly log?: (line: string) => void
}

export interface ChaosResult {
  readonly seed: number
  readonly ok: boolean
  readonly findings: ReadonlyArray<Finding>
  readonly summary: string
  readonly reportPath: string | undefined
  readonly stats: {
    readonly ops: number
    readonly submits: { ok: number; fail: number; info: number }
    /** Why submits failed or ended unknown: error codes and socket errors, with counts. */
    readonly submitErrors: Record<string, number>
    readonly reads: { ok: number; fail: number }
    readonly jobs: number
    readonly faults: Record<string, number>
    readonly cycles: number
    readonly availabilityMs: number | undefined
    readonly linearizability: ReadonlyArray<LinearizabilityReport>
    readonly terms: number
    /** `cluster_mgr audit verify` verdicts by node. */
    readonly audits: Record<string, string>
    readonly elapsedMs: number
  }
}

/** The cluster of the run in progress, so that a SIGINT handler can kill its processes. */
export const active = new Set<ChaosCluster>()

export const killActive = async (): Promise<void> => {
  await Promise.all([...active].map((c) => c.cleanup()))
}

/** Run settings drawn from the seed (so a seed names them too). */
export const drawSettings = (seed: number, options: ChaosOptions) => {
  const rng = new Prng(seed).derive("settings")
  const election = rng.range(300, 500)
  // Snapshots rare, frequent, or frequent with a short retained log (a node that was down or
  // cut off for a few seconds then catches up by snapshot: its journal restarts from a base).
  const snapshot = rng.pick([
    { entries: 100_000, sec: 3600, retain: 1000 },
    { entries: 300, sec: 5, retain: 20 },
    { entries: 1000, sec: 10, retain: 1000 }
  ])
  return {
    cnf: {
      raft_election_timeout_ms: election,
      raft_heartbeat_interval_ms: 50,
      raft_tick_ms: 10,
      raft_snapshot_interval_entries: snapshot.entries,
      raft_snapshot_interval_sec: snapshot.sec,
      raft_log_retain_entries: snapshot.retain,
      raft_transfer_timeout_ms: 1500,
      raft_catchup_timeout_ms: 5000,
      ...options.cnf
    } as Record<string, string | number>,
    clients: options.clients ?? rng.range(4, 8),
    spare: options.spare ?? (options.durationMs >= 20_000 && rng.chance(0.5)),
    kinds: options.kinds ?? allKinds
  }
}

export const runChaos = async (options: ChaosOptions): Promise<ChaosResult> => {
  const started = Date.now()
  const log = options.log ?? (() => {})
  const settings = drawSettings(options.seed, options)
  const rng = new Prng(options.seed)
  const cluster = new ChaosCluster({ nodes: options.nodes, spare: settings.spare, cnf: settings.cnf })
  active.add(cluster)
  const recorder = new Recorder(() => cluster.now(), `${options.seed}`)
  const findings: Array<Finding> = []
  const lin: Array<LinearizabilityReport> = []
  let availabilityMs: number | undefined
  let nemesis: Nemesis | undefined
  let workload: Workload | undefined
  let dumps: Array<JournalDump> = []
  let audits: Array<AuditResult> = []
  let terms = 0
  let jobs = 0
  const requestTimeoutMs = 4000
  let result: ChaosResult | undefined
  try {
    log(`seed ${options.seed}: ${options.nodes} nodes${settings.spare ? " + spare" : ""}, ${settings.clients} clients, ${options.durationMs / 1000} s, cnf ${JSON.stringify(settings.cnf)}`)
    await cluster.start()
    cluster.startMonitor()
    await waitForLeader(cluster.members.map((c) => c.node), 30_000)
    cluster.log("leader elected; workload and nemesis start")

    workload = new Workload(cluster, recorder, rng.derive("workload"), {
      clients: settings.clients,
      timeoutMs: requestTimeoutMs,
      submitRatio: 0.4,
      thinkMs: 30
    })
    nemesis = new Nemesis(cluster, recorder, rng.derive("nemesis"), {
      kinds: settings.kinds,
      faultMs: [1500, 5000],
      quietMs: [800, 2500],
      requestTimeoutMs
    })
    const until = cluster.now() + options.durationMs
    workload.start()
    await nemesis.run(until)
    cluster.log("nemesis done; clients stop")
    await workload.stop()

    // ------------------------------------------------------------------ heal, availability
    await cluster.healAll()
    const healedAt = cluster.now()
    const probeProcess = recorder.newProcess()
    const prng = rng.derive("probe")
    for (;;) {
      // Through a member: a node that churn removed knows no leader any more.
      const voters = cluster.currentVoters()
      const pool = cluster.all.filter((c) => voters.includes(c.node.raft))
      const via = prng.pick(pool.length > 0 ? pool : cluster.members)
      const leader = cluster.currentLeader() ?? prng.pick(cluster.members)
      const op = await recorder.submit(probeProcess, "probe", { name: via.node.name, http: via.node.http }, "transfer_leader", { target_leader: leader.node.raft }, 1000)
      if (op.outcome === "ok") {
        availabilityMs = cluster.now() - healedAt
        break
      }
      if (cluster.now() - healedAt > 30_000) break
      await sleep(50)
    }
    cluster.log(availabilityMs === undefined ? "UNAVAILABLE 30 s after healing" : `available again ${availabilityMs.toFixed(0)} ms after healing`)
    if (availabilityMs === undefined || availabilityMs > 5000) {
      findings.push({ checker: "availability", message: availabilityMs === undefined ? "no job accepted within 30 s after healing" : `first job accepted ${availabilityMs.toFixed(0)} ms after healing (limit 5000 ms)` })
    }

    // -------------------------------------------------------------------- convergence
    // The group at the end: the voters the leader names (the spare may have been removed; a
    // removed node keeps its data but hears no more, so it is checked only up to what it applied).
    let converged = false
    const convergeBy = cluster.now() + 30_000
    let last = ""
    let group = cluster.all
    while (!converged && cluster.now() < convergeBy) {
      try {
        const all = await cluster.statuses()
        const leaders = all.filter((s) => s.role === "leader")
        if (leaders.length === 1) group = cluster.all.filter((c) => leaders[0].voters.includes(c.node.raft))
        const ss = all.filter((s) => group.some((c) => c.node.raft === s.node))
        const voters = new Set(ss.map((s) => JSON.stringify([...s.voters].sort())))
        converged =
          leaders.length === 1 &&
          !leaders[0].joint &&
          ss.every((s) => s.applied_index === leaders[0].commit_index && s.leader === leaders[0].node) &&
          voters.size === 1
        last = all.map((s) => `${s.node} ${s.role} t${s.term} applied ${s.applied_index} commit ${s.commit_index}${s.joint ? " joint" : ""}`).join("; ")
      } catch (e) {
        last = (e as Error).message
      }
      if (!converged) await sleep(200)
    }
    const outside = cluster.all.filter((c) => !group.includes(c))
    cluster.log(`${converged ? "converged" : "NOT converged"}: ${last}${outside.length ? `; not in the group: ${outside.map((c) => c.node.name).join(",")}` : ""}`)
    if (!converged) findings.push({ checker: "convergence", message: `nodes did not converge within 30 s of healing: ${last}` })

    // ----------------------------------------------------------------- final reads
    const maxId = Math.max(0, ...recorder.ops.filter((o) => o.jobId !== undefined).map((o) => Number(o.jobId)), ...recorder.ops.filter((o) => o.found).map((o) => Number(o.input.jobId)))
    const ids = Array.from({ length: maxId + 2 }, (_, i) => String(i + 1))
    let next = 0
    // Bounded as a whole too: a group that keeps answering "retry" for every job would otherwise
    // take 15 s per id. Past it each id gets one attempt, and the run reports what it could not read.
    const readsBy = cluster.now() + 120_000
    const readers = Array.from({ length: 6 }, async () => {
      const p = recorder.newProcess()
      while (next < ids.length) {
        const i = next++
        // Through each node in turn; retried while the answer says nothing about the job (a
        // leader change: unfinished transfer jobs are resumed by each new leader).
        const deadline = Math.min(cluster.now() + 15_000, readsBy)
        for (let attempt = 0; ; attempt++) {
          const via = group[(i + attempt) % group.length]
          const op = await recorder.read(p, "final", { name: via.node.name, http: via.node.http }, ids[i], 5000)
          if (op.outcome === "ok" || cluster.now() > deadline) break
          await sleep(100)
        }
      }
    })
    await Promise.all(readers)
    cluster.log(`final reads of ${ids.length} ids done through ${group.map((c) => c.node.name).join(",")}`)
    await cluster.stopMonitor()

    // A member that joined by snapshot copies the events before it (HistoryBackfill); the
    // durability check counts them, so give the copies time to finish (the gauge reaches 0).
    const historyBy = cluster.now() + 20_000
    let copying = group.map((c) => c.node.name)
    while (copying.length > 0 && cluster.now() < historyBy) {
      const left = await Promise.all(group.map(async (c) => {
        const r = await request("GET", c.node.http, "/metrics", undefined, 2000).catch(() => undefined)
        const line = r?.text.split("\n").find((l) => l.startsWith("cluster_mgr_journal_history_missing"))
        return line !== undefined && Number(line.split(" ").at(-1)) === 0 ? undefined : c.node.name
      }))
      copying = left.filter((n): n is string => n !== undefined)
      if (copying.length > 0) await sleep(250)
    }
    cluster.log(copying.length === 0 ? "histories copied" : `histories still copying after 20 s: ${copying.join(",")}`)

    // ---------------------------------------------------------------- data dirs
    await cluster.stopAll()
    dumps = cluster.all.map((c) => readJournal(c.node.name, c.node.spec.dataDir))
    const groupDumps = dumps.filter((d) => group.some((c) => c.node.name === d.node))
    if (!options.skipAudit) audits = await Promise.all(cluster.all.map((c) => auditVerify(c.node.name, c.node.spec.dataDir)))
    for (const a of audits) {
      if (a.verdict === "divergence" || a.verdict === "error") findings.push({ checker: "audit", message: `${a.node}: cluster_mgr audit verify: ${a.verdict}: ${a.output}` })
    }
    const journalProblems = new Set([...compareJournals(groupDumps), ...compareJournals(dumps)])
    for (const p of journalProblems) findings.push({ checker: "journal", message: p })

    // ------------------------------------------------------------------ history checks
    // Journal retention: old finished jobs may be forgotten (pruned), which the checks then allow.
    const retention = ["journal_retain_events", "journal_retain_days"].some((key) => Number(settings.cnf[key] ?? 0) > 0)
    const resolution = resolve(recorder.ops, dumps, retention)
    jobs = resolution.jobs.size
    findings.push(...resolution.findings)
    findings.push(...checkIds(recorder.ops))
    findings.push(...checkDurable(recorder.ops, groupDumps, retention))
    findings.push(...checkFinalReads(recorder.ops, retention))
    const timeout = options.checkTimeoutMs ?? 30_000
    for (const report of [checkJobs(resolution.jobOps, recorder.ops, timeout), checkRegistry(resolution.jobOps, recorder.ops, timeout)]) {
      lin.push(report)
      findings.push(...report.findings)
    }
    const claims = [...cluster.all.flatMap((c) => leaderClaimsFromLog(cluster.logText(c), c.node.raft)), ...leaderClaimsFromSamples(cluster.samples)]
    const leaders = checkLeaders(claims)
    terms = leaders.terms
    findings.push(...leaders.findings)
    for (const crash of cluster.crashes) findings.push({ checker: "crash", message: `${crash.node} pid ${crash.pid} exited by itself at ${crash.t.toFixed(0)} ms: ${crash.exit}; stderr: ${crash.stderr.slice(-1000)}` })
  } catch (e) {
    findings.push({ checker: "harness", message: `run aborted: ${(e as Error).stack ?? String(e)}` })
  } finally {
    nemesis?.stop()
    // After an abort the clients may still run: stop them (they finish within their timeout).
    await workload?.stop()
    const all = findings.splice(0, findings.length)
    findings.push(...capFindings(all, 10))
    let reportPath: string | undefined
    const stats = { ...statsOf(recorder, nemesis, jobs, availabilityMs, lin, terms, started), audits: Object.fromEntries(audits.map((a) => [a.node, a.verdict])) }
    const summary = summarize(options, stats, findings)
    try {
      if (findings.length > 0 || options.alwaysReport === true) reportPath = writeReport(options, settings, cluster, recorder, findings, summary, dumps, audits)
    } catch (e) {
      log(`could not write the report: ${(e as Error).message}`)
    }
    await cluster.cleanup()
    active.delete(cluster)
    log(summary + (reportPath ? `\n  report: ${reportPath}` : ""))
    result = { seed: options.seed, ok: findings.length === 0, findings, summary, reportPath, stats }
  }
  return result
}

/** At most `per` findings per checker, then one that counts the rest (a broken state machine breaks everything after it). */
const capFindings = (findings: ReadonlyArray<Finding>, per: number): Array<Finding> => {
  const out: Array<Finding> = []
  const count = new Map<string, number>()
  for (const f of findings) {
    const n = (count.get(f.checker) ?? 0) + 1
    count.set(f.checker, n)
    if (n <= per) out.push(f)
  }
  for (const [checker, n] of count) if (n > per) out.push({ checker, message: `... and ${n - per} more ${checker} finding(s) like the above` })
  return out
}

const statsOf = (
  recorder: Recorder,
  nemesis: Nemesis | undefined,
  jobs: number,
  availabilityMs: number | undefined,
  lin: ReadonlyArray<LinearizabilityReport>,
  terms: number,
  started: number
): Omit<ChaosResult["stats"], "audits"> => {
  const submits = { ok: 0, fail: 0, info: 0 }
  const reads = { ok: 0, fail: 0 }
  const submitErrors: Record<string, number> = {}
  for (const op of recorder.ops) {
    if (op.kind === "submit" && op.outcome !== "ok") {
      const why = op.errorCode ?? (op.detail.includes("timed out") ? "timeout" : op.detail.split(" ")[0] || "?")
      submitErrors[why] = (submitErrors[why] ?? 0) + 1
    }
    if (op.kind === "submit") submits[op.outcome]++
    else reads[op.outcome === "ok" ? "ok" : "fail"]++
  }
  return {
    ops: recorder.ops.length,
    submits,
    submitErrors,
    reads,
    jobs,
    faults: nemesis?.stats.faults ?? {},
    cycles: nemesis?.stats.cycles ?? 0,
    availabilityMs,
    linearizability: lin,
    terms,
    elapsedMs: Date.now() - started
  }
}

const summarize = (options: ChaosOptions, s: ChaosResult["stats"], findings: ReadonlyArray<Finding>): string => {
  const faults = Object.entries(s.faults).map(([k, v]) => `${k}x${v}`).join(" ") || "none"
  const lin = s.linearizability.map((l) => `${l.model} ${l.outcome} (${l.partitions} part., ${l.elapsedMs} ms)`).join(", ") || "not run"
  return [
    `seed ${options.seed} (${options.nodes} nodes, ${options.durationMs / 1000} s): ${findings.length === 0 ? "PASS" : `FAIL (${findings.length} finding(s): ${[...new Set(findings.map((f) => f.checker))].join(", ")})`}`,
    `  ops ${s.ops}: submits ok ${s.submits.ok} / fail ${s.submits.fail} / unknown ${s.submits.info} ${JSON.stringify(s.submitErrors)}, reads ok ${s.reads.ok} / no-answer ${s.reads.fail}; jobs ${s.jobs}; terms ${s.terms}`,
    `  faults (${s.cycles} cycles): ${faults}`,
    `  linearizability: ${lin}; audit verify ${Object.entries(s.audits).map(([n, v]) => `${n} ${v}`).join(", ") || "not run"}; available ${s.availabilityMs === undefined ? "never" : `${s.availabilityMs.toFixed(0)} ms`} after healing; ${(s.elapsedMs / 1000).toFixed(1)} s wall`
  ].join("\n")
}

const writeReport = (
  options: ChaosOptions,
  settings: ReturnType<typeof drawSettings>,
  cluster: ChaosCluster,
  recorder: Recorder,
  findings: ReadonlyArray<Finding>,
  summary: string,
  dumps: ReadonlyArray<JournalDump>,
  audits: ReadonlyArray<AuditResult>
): string => {
  const dir = path.join(options.reportDir ?? ".chaos-failures", `seed-${options.seed}-${new Date().toISOString().replace(/[:.]/g, "-")}${findings.length === 0 ? "-pass" : ""}`)
  fs.mkdirSync(dir, { recursive: true })
  const lines: Array<string> = [
    `replay: npm run chaos -- --seed ${options.seed} --nodes ${options.nodes} --duration ${options.durationMs / 1000}s${options.clients ? ` --clients ${options.clients}` : ""}${options.kinds ? ` --kinds ${options.kinds.join(",")}` : ""}${options.cnf ? ` --cnf ${Object.entries(options.cnf).map(([k, v]) => `${k}=${v}`).join(",")}` : ""}`,
    `(reproducible from the seed up to OS timing)`,
    summary,
    `settings: ${JSON.stringify(settings)}`,
    `nodes: ${cluster.all.map((c) => `${c.node.name} http ${c.node.http} raft ${c.node.raft} pids ${c.node.pids.join(",")}`).join("; ")}`,
    "",
    "== findings =="
  ]
  for (const f of findings) {
    lines.push(`[${f.checker}] ${f.message}`)
    for (const o of f.ops ?? []) lines.push(`    ${o}`)
    if (f.window !== undefined) {
      const [from, to] = f.window
      const around = cluster.timeline.filter((e) => e.t >= from - 5000 && e.t <= to + 1000)
      lines.push(`  faults from 5 s before the window to 1 s after:`)
      for (const e of around) lines.push(`    ${e.t.toFixed(0).padStart(7)} ms  ${e.what}`)
    }
  }
  lines.push("", "== journals ==")
  for (const d of dumps) lines.push(`${d.node}: ${d.rows.length} rows, base seq ${d.baseSeq}, applied index ${d.appliedIndex}${d.error ? `, error ${d.error}` : ""}`)
  for (const a of audits) lines.push(`${a.node}: audit verify ${a.verdict}: ${a.output.split("\n")[0]}`)
  lines.push("", "== timeline: faults (operations in history.txt) ==")
  for (const e of cluster.timeline) lines.push(`${e.t.toFixed(0).padStart(7)} ms  ${e.what}`)
  fs.writeFileSync(path.join(dir, "report.txt"), lines.join("\n") + "\n")

  // The whole timeline, faults and operations merged by time.
  const merged: Array<{ t: number; text: string }> = [
    ...cluster.timeline.map((e) => ({ t: e.t, text: `FAULT ${e.what}` })),
    ...recorder.ops.map((o) => ({ t: o.call, text: describeOp(o) }))
  ].sort((a, b) => a.t - b.t)
  fs.writeFileSync(path.join(dir, "history.txt"), merged.map((m) => `${m.t.toFixed(1).padStart(9)}  ${m.text}`).join("\n") + "\n")
  fs.writeFileSync(path.join(dir, "history.json"), JSON.stringify(recorder.ops.map((o) => ({ ...o, ret: Number.isFinite(o.ret) ? o.ret : null }))))
  for (const c of cluster.all) {
    try {
      fs.copyFileSync(c.node.spec.logFile, path.join(dir, `${c.node.name}.log`))
    } catch {
      // no log
    }
    if (c.node.stderr.trim() !== "") fs.writeFileSync(path.join(dir, `${c.node.name}.stderr`), c.node.stderr)
    try {
      for (const suffix of ["", "-wal", "-shm"]) {
        const file = path.join(c.node.spec.dataDir, `journal.db${suffix}`)
        if (fs.existsSync(file)) fs.copyFileSync(file, path.join(dir, `${c.node.name}.journal.db${suffix}`))
      }
    } catch {
      // no journal
    }
  }
  return path.join(dir, "report.txt")
}
