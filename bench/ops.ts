/**
 * Operations figures of issue 7, measured on real processes (bench/emit.ts calls `measureOps`
 * once per system, each on a fresh 3-node group, after that system's throughput run):
 *
 * 1. transfer_leader: BENCH_TRANSFERS (default 20) transfers, each naming a follower (the next
 *    node after the leader, so the targets go round the group), timed from sending the Emit raft_mission transfer_leader to the leader
 *    until get_status, polled every 2 ms at the target node, reports the job `done` (the API has
 *    no way to wait for a job). etcd: POST /v3/maintenance/transfer-leadership (the gateway of
 *    etcdctl move-leader) to the leader, which answers once it sees the target lead (etcd 3.4
 *    checks once per heartbeat interval, so its figure comes in steps of about 100 ms).
 * 2. Failover when the leader is paused: under load at concurrency 16, SIGSTOP the leader
 *    BENCH_PAUSES times (default 5), timing the pause -> the first job sent after it and accepted
 *    by a survivor; then SIGCONT, and wait until the old leader follows the new one and has
 *    caught up. Requests time out after 500 ms here (a paused process holds its connections
 *    open), so the clients look for the new leader while the election runs. Target: election
 *    timeout + 2 heartbeats, from the nodes' cnf with cluster_mgr's defaults (src/domain/config.ts;
 *    etcd: its defaults, 1000 and 100 ms).
 * 3. Restart of a node holding many events: fill the group with BENCH_FILL accepted jobs
 *    (default 100000; the emit bench's jobs at concurrency 64, puts for etcd), then stop a
 *    follower with SIGTERM and restart it, timing spawn -> serves status; then kill -9 it and do
 *    the same. Each restart waits until the node has caught up again.
 * 4. add_peer (cluster_mgr only): on the filled group, a 4th node on an empty data directory,
 *    its cnf listing the members and itself (docs/operations.md, "Add a node"); timed from the
 *    Emit raft_mission add_peer until get_status (polled every 5 ms at the leader) reports the
 *    job ended; then remove_peer, and the node is stopped.
 *
 * Each part that fails is reported (its figure "—", its target MISSED) and the others still run.
 */
import * as fs from "node:fs"
import type * as http from "node:http"
import { Either } from "effect"
import { parseConfig } from "../src/domain/config.js"
import { request, type Send, sleep, startLoad } from "./loadgen.js"
import { killAndWait, median, removeDir, stopGracefully, waitFor } from "./procs.js"
import { ClusterMgr, type CmNode, Etcd, type System, type SysNode, waitLeader, waitRejoined, waitStableLeader } from "./systems.js"
import { fmt, msRow, type Row } from "./table.js"

export const OPS = process.env.BENCH_OPS !== "0"
export const TRANSFERS = Number(process.env.BENCH_TRANSFERS ?? 20)
export const PAUSES = Number(process.env.BENCH_PAUSES ?? 5)
export const FILL = Number(process.env.BENCH_FILL ?? 100_000)
const PAUSE_CONCURRENCY = 16
const FILL_CONCURRENCY = 64
/** Request timeout of the clients during the pauses: below the election timeout (see above). */
const PAUSE_REQUEST_TIMEOUT_MS = 500
const TRANSFER_POLL_MS = 2
const ADD_PEER_POLL_MS = 5

/** An upper bound of the time the operations take for both systems, for the watchdog. */
export const opsWatchdogMs = (): number =>
  OPS ? 2 * (TRANSFERS * 40_000 + PAUSES * 150_000 + Math.ceil(FILL / 20) * 1000 + 600_000) : 0

export interface OpsFigures {
  readonly system: string
  /** The Raft timings the pause target is computed from. */
  electionTimeoutMs: number
  heartbeatMs: number
  /** ms from sending the transfer until done (cluster_mgr) or answered (etcd), per transfer. */
  transfers: Array<number>
  /**
   * cluster_mgr, per transfer, ms after sending the Emit: its accept reply; the job's started_at
   * and ended_at (its memo; wall clock, ms resolution).
   */
  transferAccept: Array<number>
  transferStarted: Array<number>
  transferEnded: Array<number>
  transferFailures: Array<string>
  transferUnsupported?: string
  pauses: Array<number>
  pauseMissed: number
  /** ms from SIGCONT until the old leader follows the new one and has caught up. */
  pauseRejoin: Array<number>
  /** Per pause: requests refused with 70006 (a leadership transfer in progress; see measurePauses). */
  pauseBusy: Array<number>
  fillJobs: number
  fillSeconds: number
  /** The leader's applied (cluster_mgr) / raft (etcd) index after the fill. */
  fillIndex: number
  restartTerm?: number
  restartKill?: number
  /** ms from spawn until the restarted node had caught up. */
  rejoinTerm?: number
  rejoinKill?: number
  stopTermMs?: number
  addPeer?: { ms: number; behind: number; status: string; info: string; joinerIndex: number | undefined; spawnMs: number }
  /** Parts that failed: "part: reason". */
  errors: Array<string>
}

const emptyOps = (system: string): OpsFigures => ({
  system,
  electionTimeoutMs: NaN,
  heartbeatMs: NaN,
  transfers: [],
  transferAccept: [],
  transferStarted: [],
  transferEnded: [],
  transferFailures: [],
  pauses: [],
  pauseMissed: 0,
  pauseRejoin: [],
  pauseBusy: [],
  fillJobs: 0,
  fillSeconds: 0,
  fillIndex: 0,
  errors: []
})

const now = (): number => performance.now()

// ----------------------------------------------------------------------- cluster_mgr's Emit

interface EmitReply {
  readonly status: string
  readonly error_code: string
  readonly error_info: string
  readonly job_id?: string
  readonly attachment?: Record<string, unknown> | null
}

const emit = async (
  agent: http.Agent,
  address: string,
  jobType: string,
  paras: Record<string, string>,
  jobId = "",
  timeoutMs = 10_000
): Promise<EmitReply> => {
  const body = JSON.stringify({ version: "1.0", job_id: jobId, job_type: jobType, timestamp: "1", user_name: "bench", paras })
  const r = await request(agent, address, "POST", "/HttpService/Emit", body, timeoutMs)
  if (r.status !== 200) throw new Error(`HTTP ${r.status} from ${address}: ${r.body.slice(0, 200)}`)
  return JSON.parse(r.body) as EmitReply
}

const submit = async (agent: http.Agent, address: string, paras: Record<string, string>): Promise<string> => {
  const reply = await emit(agent, address, "raft_mission", paras)
  if (reply.status !== "accept" || reply.job_id === undefined) throw new Error(`${paras.task_type} not accepted: ${reply.status} ${reply.error_code} ${reply.error_info}`)
  return reply.job_id
}

/** Error codes of get_status that say nothing about the job: no leader now, unknown (yet), busy. */
const transientCodes = new Set(["70002", "70003", "70006"])

/** Polls get_status every `everyMs` until the job is done or failed; `at` is when that reply arrived. */
const pollJob = async (
  agent: http.Agent,
  address: string,
  jobId: string,
  timeoutMs: number,
  everyMs: number
): Promise<{ at: number; reply: EmitReply }> => {
  const deadline = now() + timeoutMs
  let last = ""
  for (;;) {
    try {
      const r = await emit(agent, address, "get_status", {}, jobId, 5000)
      if (r.job_id === jobId && (r.status === "done" || (r.status === "failed" && !transientCodes.has(r.error_code)))) return { at: now(), reply: r }
      last = `${r.status} ${r.error_code} ${r.error_info}`.trim()
    } catch (e) {
      last = (e as Error).message
    }
    if (now() > deadline) throw new Error(`job ${jobId} did not end within ${timeoutMs} ms (last get_status: ${last})`)
    await sleep(everyMs)
  }
}

/** election timeout, heartbeat and catch-up timeout of the group's nodes (their cnf, cluster_mgr's defaults). */
const cmTimings = (cm: ClusterMgr): { electionTimeoutMs: number; heartbeatMs: number; catchupTimeoutMs: number } => {
  const parsed = parseConfig(fs.readFileSync(cm.nodes[0].cnf, "utf8"), cm.nodes[0].cnf)
  if (Either.isLeft(parsed)) throw new Error(`the bench's cnf does not parse: ${String(parsed.left.message ?? parsed.left)}`)
  const c = parsed.right
  return { electionTimeoutMs: c.raft_election_timeout_ms, heartbeatMs: c.raft_heartbeat_interval_ms, catchupTimeoutMs: c.raft_catchup_timeout_ms }
}

/** etcd's defaults (the bench passes no timing flags). */
const etcdTimings = { electionTimeoutMs: 1000, heartbeatMs: 100 }

// --------------------------------------------------------------------------------- parts

/** One transfer from the leader `from` to `to`; resolves with ms until done. */
const transferOnce = async (sys: System, agent: http.Agent, from: SysNode, to: SysNode, f: OpsFigures): Promise<number> => {
  if (sys instanceof ClusterMgr) {
    const t0 = now()
    const wall0 = Date.now()
    const jobId = await submit(agent, from.address, { task_type: "transfer_leader", target_leader: (to as CmNode).raft })
    const accepted = now()
    const end = await pollJob(agent, to.address, jobId, 30_000, TRANSFER_POLL_MS)
    if (end.reply.status !== "done") throw new Error(`job ${jobId} failed: ${end.reply.error_code} ${end.reply.error_info}`)
    f.transferAccept.push(accepted - t0)
    const memo = end.reply.attachment ?? {}
    f.transferStarted.push(Number(memo.started_at) - wall0)
    f.transferEnded.push(Number(memo.ended_at) - wall0)
    return end.at - t0
  }
  if (sys instanceof Etcd) {
    const id = (await sys.status(to))?.header.member_id
    if (id === undefined) throw new Error(`${to.name} does not answer status`)
    const t0 = now()
    const r = await request(agent, from.address, "POST", "/v3/maintenance/transfer-leadership", JSON.stringify({ targetID: id }), 30_000)
    const ms = now() - t0
    if (r.status === 404 || r.status === 501) {
      f.transferUnsupported = `POST /v3/maintenance/transfer-leadership: HTTP ${r.status}`
      throw new Error(f.transferUnsupported)
    }
    if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.body.slice(0, 200)}`)
    return ms
  }
  throw new Error(`no transfer for ${sys.name}`)
}

const measureTransfers = async (sys: System, agent: http.Agent, f: OpsFigures): Promise<void> => {
  console.log(`  transfer_leader: ${TRANSFERS} transfers, each to the follower after the leader (node 1 -> 2 -> 3 -> 1 ...)`)
  for (let i = 1; i <= TRANSFERS; i++) {
    const from = await waitStableLeader(sys, 300, 30_000)
    const to = sys.nodes[(sys.nodes.indexOf(from) + 1) % sys.nodes.length]
    try {
      const ms = await transferOnce(sys, agent, from, to, f)
      f.transfers.push(ms)
      const leads = (await sys.probe(to))?.leader
      const detail =
        sys instanceof ClusterMgr
          ? ` (after the Emit: accepted ${fmt(f.transferAccept.at(-1)!, 1)} ms, job started ${fmt(f.transferStarted.at(-1)!, 0)} ms and ended ${fmt(f.transferEnded.at(-1)!, 0)} ms by its memo)`
          : ""
      console.log(`    transfer ${String(i).padStart(2)}: ${from.name} -> ${to.name}: ${fmt(ms, 1)} ms${detail}${leads ? "" : `; ${to.name} does not report itself leader now`}`)
    } catch (e) {
      if (f.transferUnsupported !== undefined) {
        console.log(`    ${sys.name} has no leadership transfer here (${f.transferUnsupported}): skipped`)
        return
      }
      f.transferFailures.push((e as Error).message)
      console.log(`    transfer ${String(i).padStart(2)}: ${from.name} -> ${to.name}: FAILED: ${(e as Error).message}`)
    }
  }
}

/**
 * The pauses run under the emit bench's load, whose jobs are transfer_leader naming the leader
 * that accepts them (a no-op while it leads). Jobs that the paused leader accepted but had not
 * run yet are resumed by the new leader as real transfers back to the paused node, which closed
 * no connection, so it is not "unreachable" (after a kill -9 such a transfer fails at once): the
 * new leader then refuses proposals with 70006 until the transfer ends or times out
 * (raft_transfer_timeout_ms), and after SIGCONT leadership may move back and forth. Each pause's
 * line and the notes under the table count those 70006 refusals.
 */
const measurePauses = async (sys: System, agent: http.Agent, f: OpsFigures): Promise<void> => {
  const target = f.electionTimeoutMs + 2 * f.heartbeatMs
  console.log(
    `  failover: SIGSTOP the leader ${PAUSES} times under load at c=${PAUSE_CONCURRENCY} (requests time out after ${PAUSE_REQUEST_TIMEOUT_MS} ms); ` +
      `target <= ${target} ms (election timeout ${f.electionTimeoutMs} + 2 x heartbeat ${f.heartbeatMs})`
  )
  sys.takeFailures()
  const load = startLoad({ concurrency: PAUSE_CONCURRENCY, send: sys.makeSend(agent, PAUSE_REQUEST_TIMEOUT_MS) })
  try {
    await sleep(1000)
    for (let i = 1; i <= PAUSES; i++) {
      let victim = await waitStableLeader(sys, 1000, 60_000)
      while (!(await sys.probe(victim))?.leader) victim = await waitStableLeader(sys, 1000, 60_000)
      const pid = victim.proc!.pid
      const t0 = now()
      const stoppedAt = new Date().toISOString().slice(11, 23)
      process.kill(pid, "SIGSTOP")
      let first: Awaited<ReturnType<typeof load.firstSuccess>>
      let newLeader: SysNode
      let index = 0
      let term = 0
      try {
        first = await load.firstSuccess(t0, (s) => s.by !== victim.address, 20_000)
        newLeader = await waitLeader(sys, 20_000)
        const p = await sys.probe(newLeader)
        index = p?.index ?? 0
        term = p?.term ?? 0
      } finally {
        process.kill(pid, "SIGCONT")
      }
      const resumed = now()
      await waitFor(
        `${victim.name} to follow the new leader (term >= ${term}) and reach index ${index} after SIGCONT`,
        async () => {
          const p = await sys.probe(victim, 1000)
          return p !== undefined && p.leaderKnown && p.term >= term && (!p.leader || p.term > term) && p.index >= index ? p : undefined
        },
        30_000,
        10
      )
      const rejoin = now() - resumed
      f.pauseRejoin.push(rejoin)
      if (first === undefined) f.pauseMissed++
      else f.pauses.push(first.doneAt - t0)
      const failures = sys.takeFailures()
      const busy = failures.filter(([reason]) => reason.includes("70006")).reduce((n, [, c]) => n + c, 0)
      f.pauseBusy.push(busy)
      console.log(
        `    pause ${String(i).padStart(2)} (SIGSTOP at ${stoppedAt} UTC, to match the nodes' logs): ${victim.name} -> first accept ${first ? `${fmt(first.doneAt - t0, 0)} ms at ${first.by}` : "none within 20 s"}; ` +
          `new leader ${newLeader.name}; after SIGCONT it followed and caught up in ${fmt(rejoin, 0)} ms; ` +
          `${failures.reduce((n, [, c]) => n + c, 0)} failed requests${busy > 0 ? `, ${busy} of them 70006 (a transfer in progress: a resumed job naming the paused node)` : ""}`
      )
      for (const [reason, n] of failures.slice(0, 2)) console.log(`        ${n} x ${reason}`)
    }
  } finally {
    const r = await load.stop()
    console.log(`    during the pauses: ${r.ok} accepted, ${r.failed} failed requests`)
  }
}

/** Waits until every node has reached the leader's index (the leader's own probe). */
const waitAllCaughtUp = async (sys: System, timeoutMs: number): Promise<{ leader: SysNode; index: number }> => {
  const leader = await waitStableLeader(sys, 500, 30_000)
  const index = (await sys.probe(leader))?.index ?? 0
  for (const n of sys.nodes) await waitRejoined(sys, n, index, timeoutMs)
  return { leader, index }
}

const fillGroup = async (sys: System, agent: http.Agent, jobs: number, f: OpsFigures): Promise<void> => {
  console.log(`  fill: ${jobs} accepted ${sys instanceof Etcd ? "puts" : "jobs"} at c=${FILL_CONCURRENCY}`)
  const base = sys.makeSend(agent)
  let ok = 0
  const send: Send = async (client) => {
    const by = await base(client)
    if (by !== undefined) ok++
    return by
  }
  sys.takeFailures()
  const t0 = now()
  const load = startLoad({ concurrency: FILL_CONCURRENCY, send })
  let lastOk = 0
  let lastProgress = t0
  let lastPrint = t0
  try {
    while (ok < jobs) {
      await sleep(100)
      if (ok > lastOk) {
        lastOk = ok
        lastProgress = now()
      } else if (now() - lastProgress > 60_000) {
        throw new Error(`no request accepted for 60 s (${ok} of ${jobs})`)
      }
      if (now() - lastPrint > 20_000) {
        lastPrint = now()
        console.log(`    ${ok} of ${jobs} after ${fmt((now() - t0) / 1000, 0)} s`)
      }
    }
  } finally {
    await load.stop()
  }
  f.fillJobs = ok
  f.fillSeconds = (now() - t0) / 1000
  const failures = sys.takeFailures()
  const { index } = await waitAllCaughtUp(sys, 120_000)
  f.fillIndex = index
  console.log(
    `    filled: ${ok} in ${fmt(f.fillSeconds, 1)} s (${fmt(ok / f.fillSeconds, 0)}/s), leader's index ${index}, every node caught up; ` +
      `${failures.reduce((n, [, c]) => n + c, 0)} failed requests`
  )
}

const measureRestarts = async (sys: System, f: OpsFigures): Promise<void> => {
  const { leader, index } = await waitAllCaughtUp(sys, 60_000)
  const node = sys.nodes.find((n) => n !== leader)!
  const ts = now()
  await stopGracefully(node.proc!, 10_000)
  f.stopTermMs = now() - ts
  f.restartTerm = await sys.restart(node)
  await waitRejoined(sys, node, index, 120_000)
  f.rejoinTerm = now() - node.proc!.spawnedAt
  console.log(
    `  restart of follower ${node.name} at index ${index}: SIGTERM stopped it in ${fmt(f.stopTermMs, 0)} ms${f.stopTermMs >= 10_000 ? " (SIGKILL after 10 s)" : ""}; ` +
      `spawn -> serves status ${fmt(f.restartTerm, 0)} ms, caught up after ${fmt(f.rejoinTerm, 0)} ms`
  )
  const again = (await waitAllCaughtUp(sys, 60_000)).index
  await killAndWait(node.proc!)
  f.restartKill = await sys.restart(node)
  await waitRejoined(sys, node, again, 120_000)
  f.rejoinKill = now() - node.proc!.spawnedAt
  console.log(`  restart of follower ${node.name} after kill -9: spawn -> serves status ${fmt(f.restartKill, 0)} ms, caught up after ${fmt(f.rejoinKill, 0)} ms`)
}

const measureAddPeer = async (cm: ClusterMgr, agent: http.Agent, f: OpsFigures, catchupTimeoutMs: number): Promise<void> => {
  const { leader, index } = await waitAllCaughtUp(cm, 60_000)
  const { node: joiner, ms: spawnMs } = await cm.startJoiner()
  console.log(`  add_peer: ${joiner.name} (${joiner.raft}) on an empty data directory serves status after ${fmt(spawnMs, 0)} ms; the group is at index ${index}`)
  const t0 = now()
  const jobId = await submit(agent, leader.address, { task_type: "add_peer", peer: joiner.raft })
  const end = await pollJob(agent, leader.address, jobId, catchupTimeoutMs + 60_000, ADD_PEER_POLL_MS)
  const ms = end.at - t0
  const joinerStatus = await cm.status(joiner)
  f.addPeer = {
    ms,
    behind: index,
    status: end.reply.status,
    info: end.reply.status === "done" ? "" : `${end.reply.error_code} ${end.reply.error_info}`,
    joinerIndex: joinerStatus?.applied_index,
    spawnMs
  }
  console.log(
    `    add_peer job ${jobId} ${end.reply.status} after ${fmt(ms, 0)} ms${f.addPeer.info ? ` (${f.addPeer.info})` : ""}; ` +
      `${joiner.name} then: ${joinerStatus ? `${joinerStatus.role}, applied index ${joinerStatus.applied_index}` : "no status"}`
  )
  if (end.reply.status === "done") {
    const removeId = await submit(agent, leader.address, { task_type: "remove_peer", peer: joiner.raft })
    const removed = await pollJob(agent, leader.address, removeId, 60_000, ADD_PEER_POLL_MS)
    console.log(`    remove_peer job ${removeId} ${removed.reply.status} after ${fmt(removed.at - t0 - ms, 0)} ms`)
  }
  await killAndWait(joiner.proc!)
}

/** Runs `part`, recording a failure instead of throwing. */
const part = async (f: OpsFigures, name: string, run: () => Promise<void>): Promise<boolean> => {
  try {
    await run()
    return true
  } catch (e) {
    const reason = (e as Error).message
    f.errors.push(`${name}: ${reason}`)
    console.log(`  ${name} FAILED: ${reason}`)
    return false
  }
}

/** The operations figures of `sys` (not yet started): starts it, runs every part, stops it. */
export const measureOps = async (sys: System, agent: http.Agent): Promise<OpsFigures> => {
  const f = emptyOps(sys.name)
  console.log(`\n== ${sys.name}: operations on a fresh group: transfers, pauses, restarts${sys instanceof ClusterMgr ? " and add_peer" : ""} behind ${FILL} ${sys instanceof Etcd ? "puts" : "jobs"}`)
  try {
    await sys.start()
    const leader = await waitLeader(sys, 30_000)
    console.log(`  3 nodes serving; leader ${leader.name}`)
    let catchupTimeoutMs = 10_000
    if (sys instanceof ClusterMgr) {
      const t = cmTimings(sys)
      f.electionTimeoutMs = t.electionTimeoutMs
      f.heartbeatMs = t.heartbeatMs
      catchupTimeoutMs = t.catchupTimeoutMs
    } else {
      f.electionTimeoutMs = etcdTimings.electionTimeoutMs
      f.heartbeatMs = etcdTimings.heartbeatMs
    }
    if (TRANSFERS > 0) await part(f, "transfer_leader", () => measureTransfers(sys, agent, f))
    if (PAUSES > 0) await part(f, "pause failover", () => measurePauses(sys, agent, f))
    if (await part(f, "fill", () => fillGroup(sys, agent, FILL, f))) {
      await part(f, "restart", () => measureRestarts(sys, f))
      if (sys instanceof ClusterMgr) await part(f, "add_peer", () => measureAddPeer(sys, agent, f, catchupTimeoutMs))
    }
  } catch (e) {
    f.errors.push(`start: ${(e as Error).message}`)
    console.log(`  ${sys.name} operations FAILED: ${(e as Error).message}`)
  } finally {
    await sys.stop()
    if (sys.dir !== "") removeDir(sys.dir)
  }
  return f
}

// --------------------------------------------------------------------------------- table

const maxOf = (xs: ReadonlyArray<number>): number => (xs.length === 0 ? NaN : Math.max(...xs))
const pick = (f: OpsFigures | undefined, xs: (f: OpsFigures) => ReadonlyArray<number>, by: (xs: ReadonlyArray<number>) => number): number | undefined =>
  f === undefined || xs(f).length === 0 ? undefined : by(xs(f))

/** The rows of the operations figures; `theirs` is etcd's (undefined when not run). */
export const opsRows = (ours: OpsFigures, theirs: OpsFigures | undefined): Array<Row> => {
  const rows: Array<Row> = []
  if (TRANSFERS > 0) {
    const failed = ours.transferFailures.length
    const n = `${ours.transfers.length}/${TRANSFERS} transfers${failed > 0 ? `, ${failed} failed` : ""}`
    const transfers = (f: OpsFigures) => f.transfers
    rows.push(
      msRow(`transfer_leader Emit -> job done, median (${n})`, pick(ours, transfers, median), pick(theirs, transfers, median), "median <= 100 ms", (o) => o <= 100, 1),
      msRow("transfer_leader Emit -> job done, max", pick(ours, transfers, maxOf), pick(theirs, transfers, maxOf), "—", undefined, 1)
    )
  }
  if (PAUSES > 0) {
    const target = ours.electionTimeoutMs + 2 * ours.heartbeatMs
    const label = `<= ${fmt(target, 0)} ms (election ${fmt(ours.electionTimeoutMs, 0)} + 2 x heartbeat ${fmt(ours.heartbeatMs, 0)})`
    const n = `${ours.pauses.length}/${PAUSES} pauses${ours.pauseMissed ? `, ${ours.pauseMissed} without an accept in 20 s` : ""}`
    const pauses = (f: OpsFigures) => f.pauses
    rows.push(
      msRow(`failover, leader paused (SIGSTOP), median (${n})`, pick(ours, pauses, median), pick(theirs, pauses, median), label, (o) => o <= target),
      msRow("failover, leader paused (SIGSTOP), max", pick(ours, pauses, maxOf), pick(theirs, pauses, maxOf), label, (o) => o <= target && ours.pauseMissed === 0)
    )
  }
  const filled = `${ours.fillJobs} jobs, index ${ours.fillIndex}`
  const restartTarget = "<= 1000 ms (100,000 events)"
  rows.push(
    msRow(`restart of a follower after SIGTERM, spawn -> serves status (${filled})`, ours.restartTerm, theirs?.restartTerm, restartTarget, (o) => o <= 1000),
    msRow("restart of a follower after kill -9, spawn -> serves status", ours.restartKill, theirs?.restartKill, restartTarget, (o) => o <= 1000)
  )
  const a = ours.addPeer
  rows.push(
    msRow(
      `add_peer of an empty node behind ${a ? a.behind : "?"} applied entries, Emit -> ${a && a.status !== "done" ? a.status : "done"}`,
      a === undefined || a.status !== "done" ? NaN : a.ms,
      undefined,
      "<= 5000 ms (1,000,000 entries)",
      (o) => o <= 5000
    )
  )
  return rows
}

/** Lines under the table: the per-operation lists and what failed. */
export const opsNotes = (ours: OpsFigures, theirs: OpsFigures | undefined): Array<string> => {
  const ms = (xs: ReadonlyArray<number>) => xs.map((x) => fmt(x, 0)).join(" ")
  const lines: Array<string> = []
  for (const f of [ours, theirs]) {
    if (f === undefined) continue
    const parts: Array<string> = []
    if (f.transfers.length > 0) parts.push(`transfers ${ms(f.transfers)}`)
    if (f.transferAccept.length > 0)
      parts.push(
        `(after the Emit, medians: accepted ${fmt(median(f.transferAccept), 0)}, job started ${fmt(median(f.transferStarted), 0)}, ended ${fmt(median(f.transferEnded), 0)} by its memo)`
      )
    if (f.transferUnsupported) parts.push(`no transfer: ${f.transferUnsupported}`)
    if (f.pauses.length > 0)
      parts.push(
        `pause failovers ${ms(f.pauses)}; rejoined after SIGCONT in ${ms(f.pauseRejoin)}` +
          (f.pauseBusy.some((n) => n > 0) ? `; 70006 refusals per pause ${f.pauseBusy.join(" ")}` : "")
      )
    if (f.fillJobs > 0) parts.push(`fill ${f.fillJobs} in ${fmt(f.fillSeconds, 0)} s to index ${f.fillIndex}`)
    if (f.rejoinTerm !== undefined) parts.push(`restarts caught up after ${fmt(f.rejoinTerm, 0)} (SIGTERM) / ${fmt(f.rejoinKill ?? NaN, 0)} (kill -9) ms from spawn`)
    if (f.addPeer) parts.push(`add_peer ${f.addPeer.status} in ${fmt(f.addPeer.ms, 0)} ms behind ${f.addPeer.behind} entries${f.addPeer.info ? ` (${f.addPeer.info})` : ""}`)
    lines.push(`   ops (ms) ${f.system}: ${parts.join("; ")}`)
    for (const e of f.errors) lines.push(`   ops ${f.system} FAILED: ${e}`)
  }
  return lines
}
