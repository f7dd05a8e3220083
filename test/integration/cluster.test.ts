import Database from "better-sqlite3"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest"
import { heapGrowingPercent, serialScavengeUpToCores } from "../../src/heapTuning.js"
import {
  addPeer,
  type ClusterNode,
  electionTimeoutMs,
  emit,
  envelope,
  getStatus,
  Harness,
  host,
  killAllStarted,
  raftMission,
  removePeer,
  request,
  sleep,
  status,
  submit,
  submitRetrying,
  transferLeader,
  waitFor,
  waitForLeader,
  waitJobEnd,
  waitUp
} from "./harness.js"
import { recentJobsKept } from "../../src/domain/state.js"

/**
 * cluster_mgr as real OS processes on loopback: election, forwarding, failover, the seed's
 * membership procedures, leadership transfer, restart, quorum loss, request validation and
 * start-up errors. Each test starts its own nodes and the afterEach hook kills them by pid.
 */

declare module "vitest" {
  interface TestContext {
    /** This test's harness: its processes and temp dirs, cleaned up in afterEach. */
    h: Harness
  }
}

// Each test gets its own harness through its context, so a timed-out test that runs on in
// the background can only touch its own (closed) harness, never the next test's.
beforeEach((ctx) => {
  ctx.h = new Harness()
})

afterEach(async ({ h, task }) => {
  if (task.result?.state === "fail") h.dumpLogs(task.name)
  await h.cleanup()
})

afterAll(() => {
  killAllStarted()
})

const sorted = (xs: ReadonlyArray<string>): Array<string> => [...xs].sort()
const others = (nodes: ReadonlyArray<ClusterNode>, ...not: ReadonlyArray<ClusterNode>) => nodes.filter((n) => !not.includes(n))

/** Waits until every node names the leader's HTTP address too (followers forward there). */
const waitLeaderHttpKnown = (nodes: ReadonlyArray<ClusterNode>, leader: ClusterNode) =>
  waitFor(
    `every node to know the leader's http address ${leader.http}`,
    async () => (await Promise.all(nodes.map((n) => status(n.http)))).every((s) => s.leader_http === leader.http),
    10_000
  )

/** The index of the snapshot stored in a node's raft.db (0: only the bootstrap one). */
const storedSnapshotIndex = (dataDir: string): number => {
  const db = new Database(path.join(dataDir, "raft.db"), { readonly: true, fileMustExist: true, timeout: 2000 })
  try {
    const row = db.prepare<[], { idx: number }>("SELECT idx FROM snapshot WHERE id = 0").get()
    return row?.idx ?? 0
  } finally {
    db.close()
  }
}

describe("cluster_mgr processes", () => {
  it("a 3-node cluster elects one leader that all nodes agree on, get_cluster_mgr_status has exactly the documented keys, and each node logs the V8 flags it set", async ({ h }) => {
    const nodes = await h.startCluster(3)
    const view = await waitForLeader(nodes)
    const members = sorted(nodes.map((n) => n.raft))
    for (const s of view.statuses) {
      expect(sorted(s.voters)).toEqual(members)
      expect(s.leader).toBe(view.leader.raft)
      expect(s.term).toBe(view.term)
      expect(s.role).toBe(s.node === view.leader.raft ? "leader" : "follower")
    }
    await waitLeaderHttpKnown(nodes, view.leader)

    const follower = others(nodes, view.leader)[0]
    const r = await emit(follower.http, envelope("get_cluster_mgr_status"))
    expect(r.httpStatus).toBe(200)
    expect(r.json).toMatchObject({ status: "done", error_code: "0", error_info: "", version: "1.0" })
    const a = r.json.attachment
    expect(sorted(Object.keys(a))).toEqual(
      sorted([
        "node",
        "http",
        "role",
        "term",
        "leader",
        "leader_http",
        "commit_index",
        "applied_index",
        "voters",
        "learners",
        "joint",
        "peers"
      ])
    )
    expect(a).toMatchObject({
      node: follower.raft,
      http: follower.http,
      role: "follower",
      term: view.term,
      leader: view.leader.raft,
      leader_http: view.leader.http,
      learners: [],
      joint: false
    })
    expect(sorted(a.voters)).toEqual(members)
    // The leader lists its followers with the HTTP address each announced when it connected.
    const followersHttp = others(nodes, view.leader).map((n) => ({ peer: n.raft, http: n.http }))
    await waitFor("the leader to list its followers' HTTP addresses", async () => {
      const peers = (await status(view.leader.http)).peers.map((p) => ({ peer: p.peer, http: p.http }))
      return JSON.stringify(peers.sort((x, y) => x.peer.localeCompare(y.peer))) === JSON.stringify(followersHttp.sort((x, y) => x.peer.localeCompare(y.peer)))
    }, 5000)

    // Each node's first log line says which V8 flags it set for itself (src/heapTuning.ts).
    const expected = [`--heap-growing-percent=${heapGrowingPercent}`, ...(os.availableParallelism() <= serialScavengeUpToCores ? ["--no-parallel-scavenge"] : [])]
    for (const n of nodes) {
      const first = fs.readFileSync(n.spec.logFile, "utf8").split("\n")[0]
      expect(first).toContain(`starting: raft ${n.raft}, http ${n.http}, V8 flags set at run time: ${expected.join(" ")}`)
    }
  }, 60_000)

  it("Emit at a follower is forwarded to the leader: the job is accepted with a job_id and get_status through another follower says done", async ({ h }) => {
    const nodes = await h.startCluster(3)
    const view = await waitForLeader(nodes)
    const [f1, f2] = others(nodes, view.leader)
    await waitLeaderHttpKnown(nodes, view.leader)

    const r = await emit(f1.http, transferLeader(view.leader.raft))
    expect(r.httpStatus).toBe(200)
    expect(r.json).toMatchObject({ status: "accept", error_code: "0", error_info: "", attachment: null })
    expect(r.json.job_id).toMatch(/^[0-9]+$/)

    const end = await waitJobEnd(f2.http, r.json.job_id)
    expect(end).toMatchObject({ status: "done", job_id: r.json.job_id, error_code: "0" })
    // A transfer to the leader itself is done at once: nothing moved.
    const after = await waitForLeader(nodes)
    expect(after.leader).toBe(view.leader)
    expect(after.term).toBe(view.term)

    // Every node counts its raft.db writes, the entries they carried (group commit) and where
    // they ran; the leader counted the request (as the follower that forwarded it did) and the
    // accepted job.
    const metricsOf = async (node: ClusterNode) => {
      const text = (await request("GET", node.http, "/metrics")).text
      return (series: string) => {
        const line = text.split("\n").find((l) => l.startsWith(`${series} `))
        return line === undefined ? NaN : Number(line.slice(series.length + 1))
      }
    }
    for (const node of nodes) {
      const value = await metricsOf(node)
      const writes = value("cluster_mgr_raft_persist_entries_count")
      expect(writes).toBeGreaterThanOrEqual(1)
      expect(value("cluster_mgr_raft_persist_entries_sum")).toBeGreaterThanOrEqual(writes)
      // Each write counted once more by the thread that ran it (hard-state-only writes too).
      const byThread = (thread: string) => value(`cluster_mgr_raft_writes_total{thread="${thread}"}`) || 0
      expect(byThread("main") + byThread("writer")).toBeGreaterThanOrEqual(writes)
      // The process's memory, and the V8 heap by space: live data sits in the old space.
      expect(value("process_resident_memory_bytes")).toBeGreaterThan(value("nodejs_heap_space_size_used_bytes{space=\"old\"}"))
      expect(value("nodejs_heap_space_size_total_bytes{space=\"new\"}")).toBeGreaterThan(0)
    }
    for (const node of [view.leader, f1]) {
      expect((await metricsOf(node))(`cluster_mgr_http_requests_total{job_type="raft_mission",status="accept"}`)).toBe(1)
    }
    expect((await metricsOf(view.leader))(`cluster_mgr_jobs_total{status="accepted"}`)).toBe(1)
  }, 60_000)

  it("after kill -9 of the leader a new leader serves Emit, every acknowledged job keeps its status (also those old enough to be read from the journal), and job ids keep increasing", async ({ h }) => {
    // A short transfer timeout makes a transfer to a SIGSTOPped node fail quickly: a failed job.
    const nodes = await h.startCluster(3, { raft_transfer_timeout_ms: 1000 })
    const first = await waitForLeader(nodes)
    await waitLeaderHttpKnown(nodes, first.leader)

    const before: Array<{ id: string; end: any }> = []
    for (let i = 0; i < 4; i++) {
      const id = await submit(nodes[i % 3].http, transferLeader(first.leader.raft))
      before.push({ id, end: await waitJobEnd(first.leader.http, id) })
    }
    const frozen = others(nodes, first.leader)[0]
    h.sigstop(frozen)
    const failedId = await submit(first.leader.http, transferLeader(frozen.raft))
    before.push({ id: failedId, end: await waitJobEnd(first.leader.http, failedId, 20_000) })
    h.sigcont(frozen)
    expect(before.map((j) => j.end.status)).toEqual(["done", "done", "done", "done", "failed"])
    expect(before[4].end.error_info).not.toBe("")
    // The leader is still the leader: the failover below is the kill's doing.
    expect((await waitForLeader(nodes)).leader).toBe(first.leader)
    // Enough newer jobs that those above leave the state's window of recent jobs: their status
    // comes from the new leader's journal.
    const newer: Array<string> = []
    await Promise.all(
      Array.from({ length: 16 }, async (_, lane) => {
        for (let i = lane; i < recentJobsKept + 8; i += 16) newer.push(await submit(first.leader.http, transferLeader(first.leader.raft)))
      })
    )
    const newest = Math.max(...newer.map(Number))
    for (const job of before) expect(Number(job.id)).toBeLessThan(newest - recentJobsKept)

    await h.kill9AndWait(first.leader)
    const survivors = others(nodes, first.leader)
    const second = await waitForLeader(survivors, 15_000)
    expect(second.leader).not.toBe(first.leader)
    expect(second.term).toBeGreaterThan(first.term)
    await waitLeaderHttpKnown(survivors, second.leader)

    for (const [i, job] of before.entries()) {
      const r = await emit(survivors[i % 2].http, getStatus(job.id))
      expect(r.httpStatus).toBe(200)
      expect(r.json.status, `job ${job.id}: ${r.text}`).toBe(job.end.status)
      expect(r.json.error_code).toBe(job.end.error_code)
      expect(r.json.error_info).toBe(job.end.error_info)
    }

    const after: Array<string> = []
    for (let i = 0; i < 3; i++) after.push(await submit(survivors[i % 2].http, transferLeader(second.leader.raft)))
    for (const id of after) expect((await waitJobEnd(second.leader.http, id)).status).toBe("done")
    const ids = [...before.map((j) => j.id), ...after].map((id) => BigInt(id))
    expect(new Set(ids).size).toBe(ids.length)
    for (let i = 1; i < ids.length; i++) expect(ids[i] > ids[i - 1], `job ids in order: ${ids.join(", ")}`).toBe(true)
  }, 90_000)

  it("the seed's add-node procedure: a 4th node listing all four does not disturb the group, add_peer makes it a voter everywhere, and it catches up by snapshot", async ({ h }) => {
    const nodes = await h.startCluster(3, { raft_snapshot_interval_entries: 50, raft_log_retain_entries: 10 })
    const view = await waitForLeader(nodes)
    await waitLeaderHttpKnown(nodes, view.leader)

    // Well over a hundred log entries while the leader keeps only 10 below its snapshot, so the
    // new node cannot be sent the log from index 1: it needs a snapshot. Enough jobs that the
    // first ones leave the state's window of recent jobs before the snapshot is taken.
    const jobCount = recentJobsKept + 150
    const ids: Array<string> = []
    const submitter = async (k: number) => {
      for (let i = k; i < jobCount; i += 6) ids.push(await submitRetrying(view.leader.http, transferLeader(view.leader.raft)))
    }
    await Promise.all([0, 1, 2, 3, 4, 5].map(submitter))
    const lastId = ids.map((id) => BigInt(id)).reduce((a, b) => (a > b ? a : b))
    expect((await waitJobEnd(view.leader.http, String(lastId), 30_000)).status).toBe("done")
    await waitFor("all jobs applied", async () => (await status(view.leader.http)).applied_index > jobCount, 30_000)
    const base = await waitForLeader(nodes)
    await waitLeaderHttpKnown(nodes, base.leader)
    expect(storedSnapshotIndex(base.leader.spec.dataDir)).toBeGreaterThan(100)

    const spec4 = await h.allocate("n4")
    const all = [...nodes.map((n) => n.raft), spec4.raft]
    h.writeCnf(spec4, all)
    const n4 = h.startNode(spec4)
    await waitUp(n4)
    // The new node campaigns, but the members are not disturbed: same leader, same term.
    const quietUntil = Date.now() + 5 * electionTimeoutMs
    while (Date.now() < quietUntil) {
      for (const s of await Promise.all(nodes.map((n) => status(n.http)))) {
        expect({ node: s.node, leader: s.leader, term: s.term }).toEqual({ node: s.node, leader: base.leader.raft, term: base.term })
        expect(s.voters).not.toContain(spec4.raft)
      }
      await sleep(100)
    }
    expect((await status(n4.http)).role).not.toBe("leader")

    const follower = others(nodes, base.leader)[0]
    const addId = await submit(follower.http, addPeer(spec4.raft))
    const end = await waitJobEnd(follower.http, addId, 30_000)
    expect(end.status, JSON.stringify(end)).toBe("done")

    const everyone = [...nodes, n4]
    await waitFor(
      "every node to list the 4th node among its voters",
      async () => (await Promise.all(everyone.map((n) => status(n.http)))).every((s) => JSON.stringify(sorted(s.voters)) === JSON.stringify(sorted(all))),
      10_000
    )
    const leaderNow = await status(base.leader.http)
    await waitFor(
      `the 4th node to apply up to ${leaderNow.commit_index}`,
      async () => (await status(n4.http)).applied_index >= leaderNow.commit_index,
      15_000
    )
    expect(storedSnapshotIndex(spec4.dataDir), "the 4th node installed a snapshot from the leader").toBeGreaterThan(0)
    expect(await status(n4.http)).toMatchObject({ role: "follower", leader: base.leader.raft })

    // The first jobs left the state's window before the snapshot, and their events precede the
    // 4th node's journal: it copies them from the leader into its history, checked against the
    // chain, so that led by it every job still has its status.
    await waitFor(
      "the 4th node's history to reach seq 1",
      async () => {
        const r = await request("GET", n4.http, "/journal/page?to=1&limit=1")
        return r.httpStatus === 200 && r.json.rows.length === 1 && r.json.rows[0].seq === 1
      },
      20_000
    )
    const moveId = await submit(n4.http, transferLeader(spec4.raft))
    expect((await waitJobEnd(n4.http, moveId, 20_000)).status).toBe("done")
    const byId = ids.map(Number).sort((a, b) => a - b)
    for (const id of [byId[0], byId[1], byId.at(-1)!]) {
      const r = await emit(n4.http, getStatus(String(id)))
      expect(r.json.status, `job ${id} led by the 4th node: ${r.text}`).toBe("done")
    }
  }, 150_000)

  it("a follower that was down past the leader's retained log installs a snapshot, keeps its own journal rows and copies only the gap up to the snapshot", async ({ h }) => {
    const nodes = await h.startCluster(3, { raft_snapshot_interval_entries: 50, raft_log_retain_entries: 10 })
    const view = await waitForLeader(nodes)
    await waitLeaderHttpKnown(nodes, view.leader)
    const runJobs = async (leader: ClusterNode, count: number) => {
      const ids: Array<string> = []
      const submitter = async (k: number) => {
        for (let i = k; i < count; i += 4) ids.push(await submitRetrying(leader.http, transferLeader(leader.raft)))
      }
      await Promise.all([0, 1, 2, 3].map(submitter))
      return ids
    }
    const early = await runJobs(view.leader, 60)
    const follower = others(nodes, view.leader)[0]
    await waitFor("the follower to apply the first jobs", async () => (await status(follower.http)).applied_index >= (await status(view.leader.http)).commit_index, 10_000)
    await h.kill9AndWait(follower)
    // Far more entries than the leader keeps below its snapshots: the follower needs one.
    await runJobs(view.leader, 150)
    const leaderNow = await status(view.leader.http)
    h.restart(follower)
    await waitUp(follower)
    await waitFor(`the follower to apply up to ${leaderNow.commit_index}`, async () => (await status(follower.http)).applied_index >= leaderNow.commit_index, 20_000)
    const journalDb = () => new Database(path.join(follower.spec.dataDir, "journal.db"), { readonly: true, fileMustExist: true, timeout: 2000 })
    const ownRows = (db: ReturnType<typeof journalDb>, base: number) =>
      db.prepare<[], { n: number; low: number; high: number }>(`SELECT count(*) AS n, min(seq) AS low, max(seq) AS high FROM journal WHERE seq <= ${base}`).get()!
    let kept: { base: number; own: { n: number; low: number; high: number } } | undefined
    const db = journalDb()
    try {
      const one = <A>(sql: string) => db.prepare<[], A>(sql).get()!
      const { base } = one<{ base: number }>("SELECT base_seq AS base FROM sm_state")
      expect(base).toBeLessThanOrEqual(1000) // one page covers it
      // A page serves the rows below the base only as far as they run without a gap.
      await waitFor(
        `the follower's history to run from its base ${base} to seq 1`,
        async () => (await request("GET", follower.http, `/journal/page?to=${base}&limit=1000`)).json?.rows?.length === base,
        20_000
      )
      // Its own rows, 1..kept, are still in its journal table below the base; only kept+1..base came from the leader.
      const own = ownRows(db, base)
      const copied = one<{ n: number; low: number; high: number }>("SELECT count(*) AS n, min(seq) AS low, max(seq) AS high FROM history")
      expect(own.n, "the follower installed a snapshot over rows of its own").toBeGreaterThan(0)
      expect(own).toEqual({ n: own.high, low: 1, high: own.high })
      expect(copied).toEqual({ n: base - own.high, low: own.high + 1, high: base })
      expect(copied.n).toBeLessThan(base)
      kept = { base, own }
    } finally {
      db.close()
    }
    // Restarted again, it keeps them: its pruner deletes only rows a prune mark says it pruned.
    await h.kill9AndWait(follower)
    h.restart(follower)
    await waitUp(follower)
    await runJobs(view.leader, 8) // applies, after each of which its pruner steps
    const leaderLater = await status(view.leader.http)
    await waitFor("the restarted follower to catch up", async () => (await status(follower.http)).applied_index >= leaderLater.commit_index, 20_000)
    const again = journalDb()
    try {
      expect(ownRows(again, kept!.base)).toEqual(kept!.own)
    } finally {
      again.close()
    }
    // What it serves below its base is the leader's chain.
    const leaderPage = await request("GET", view.leader.http, "/journal/page?to=100&limit=100")
    const followerPage = await request("GET", follower.http, "/journal/page?to=100&limit=100")
    expect(followerPage.json.rows).toHaveLength(100)
    expect(followerPage.json.rows).toEqual(leaderPage.json.rows)
    // Led by it, the first jobs still have their status.
    const moveId = await submit(follower.http, transferLeader(follower.raft))
    expect((await waitJobEnd(follower.http, moveId, 20_000)).status).toBe("done")
    const r = await emit(follower.http, getStatus(early[0]))
    expect(r.json.status, `job ${early[0]} led by the restarted follower: ${r.text}`).toBe("done")
  }, 120_000)

  it("add_peer of an address where nothing listens fails after raft_catchup_timeout_ms and leaves the voters unchanged", async ({ h }) => {
    const nodes = await h.startCluster(3, { raft_catchup_timeout_ms: 1000 })
    const view = await waitForLeader(nodes)
    await waitLeaderHttpKnown(nodes, view.leader)
    const members = sorted(nodes.map((n) => n.raft))
    const nowhere = `${host}:1` // nothing listens on port 1

    const id = await submit(view.leader.http, addPeer(nowhere))
    const end = await waitJobEnd(view.leader.http, id, 20_000)
    expect(end.status, `add_peer of ${nowhere}: ${JSON.stringify(end)}`).toBe("failed")
    expect(end.error_info).toContain(nowhere)
    for (const s of await Promise.all(nodes.map((n) => status(n.http)))) {
      expect(sorted(s.voters), `voters on ${s.node}`).toEqual(members)
      expect(s.learners).toEqual([])
      expect(s.joint).toBe(false)
    }
  }, 60_000)

  it("remove_peer of a follower is done, the remaining nodes no longer list it, and its process can then be stopped", async ({ h }) => {
    const nodes = await h.startCluster(3)
    const view = await waitForLeader(nodes)
    await waitLeaderHttpKnown(nodes, view.leader)
    const [victim, other] = others(nodes, view.leader)

    const id = await submit(other.http, removePeer(victim.raft))
    const end = await waitJobEnd(view.leader.http, id)
    expect(end.status, JSON.stringify(end)).toBe("done")
    const remaining = [view.leader, other]
    await waitFor(
      "the remaining nodes to drop the removed peer from their voters",
      async () => (await Promise.all(remaining.map((n) => status(n.http)))).every((s) => JSON.stringify(sorted(s.voters)) === JSON.stringify(sorted(remaining.map((n) => n.raft)))),
      10_000
    )

    const exit = await h.sigterm(victim, 10_000)
    expect(exit, "the removed node exits on SIGTERM").toEqual({ code: 0, signal: null })
    // The two remaining voters carry on without it.
    const after = await waitForLeader(remaining)
    const next = await submit(other.http, transferLeader(after.leader.raft))
    expect((await waitJobEnd(other.http, next)).status).toBe("done")
  }, 60_000)

  it("transfer_leader to each node in turn is done and every node's /status names the target as leader", async ({ h }) => {
    const nodes = await h.startCluster(3)
    const view = await waitForLeader(nodes)
    const order = [...others(nodes, view.leader), view.leader]
    for (const [i, target] of order.entries()) {
      const before = await waitForLeader(nodes)
      await waitLeaderHttpKnown(nodes, before.leader)
      const id = await submit(nodes[i % 3].http, transferLeader(target.raft))
      const end = await waitJobEnd(nodes[(i + 1) % 3].http, id, 20_000)
      expect(end.status, `transfer to ${target.name}: ${JSON.stringify(end)}`).toBe("done")
      const after = await waitForLeader(nodes)
      expect(after.leader.raft).toBe(target.raft)
      expect(after.term).toBeGreaterThan(before.term)
    }
  }, 90_000)

  it("transfer_leader to a SIGSTOPped node fails with a reason and the group carries on under its old leader", async ({ h }) => {
    const nodes = await h.startCluster(3, { raft_transfer_timeout_ms: 1500 })
    const view = await waitForLeader(nodes)
    await waitLeaderHttpKnown(nodes, view.leader)
    const [stopped, other] = others(nodes, view.leader)

    h.sigstop(stopped)
    const id = await submit(other.http, transferLeader(stopped.raft))
    const end = await waitJobEnd(view.leader.http, id, 20_000)
    expect(end.status, JSON.stringify(end)).toBe("failed")
    expect(end.error_code).not.toBe("0")
    expect(end.error_info).toContain(stopped.raft)

    const after = await waitForLeader([view.leader, other])
    expect(after.leader).toBe(view.leader)
    expect(after.term).toBe(view.term)
    const next = await submit(other.http, transferLeader(view.leader.raft))
    expect((await waitJobEnd(other.http, next)).status).toBe("done")

    h.sigcont(stopped)
    const leaderNow = await status(view.leader.http)
    await waitFor(
      "the resumed node to follow the old leader again",
      async () => {
        const s = await status(stopped.http)
        return s.leader === view.leader.raft && s.applied_index >= leaderNow.commit_index
      },
      10_000
    )
    expect((await waitForLeader(nodes)).leader).toBe(view.leader)
  }, 60_000)

  it("a restart of all nodes (SIGTERM, same data dirs) keeps the jobs and the membership changed by add/remove, although the cnf files list the initial members", async ({ h }) => {
    const nodes = await h.startCluster(3)
    const [a, b, c] = nodes
    const view = await waitForLeader(nodes)
    await waitLeaderHttpKnown(nodes, view.leader)

    const jobs: Array<{ id: string; end: any }> = []
    for (let i = 0; i < 3; i++) {
      const id = await submit(nodes[i].http, transferLeader(view.leader.raft))
      jobs.push({ id, end: await waitJobEnd(view.leader.http, id) })
    }

    // Membership {a, b, c} -> add d -> remove c: {a, b, d}; a's and b's cnf still say a, b, c.
    const specD = await h.allocate("n4")
    h.writeCnf(specD, [a.raft, b.raft, c.raft, specD.raft])
    const d = h.startNode(specD)
    await waitUp(d)
    const addId = await submit(a.http, addPeer(d.raft))
    jobs.push({ id: addId, end: await waitJobEnd(a.http, addId, 20_000) })
    expect(jobs.at(-1)!.end.status).toBe("done")
    const removeId = await submit(a.http, removePeer(c.raft))
    jobs.push({ id: removeId, end: await waitJobEnd(a.http, removeId, 20_000) })
    expect(jobs.at(-1)!.end.status).toBe("done")
    expect((await h.sigterm(c))?.code).toBe(0)
    const group = [a, b, d]
    const voters = sorted(group.map((n) => n.raft))
    await waitFor(
      "voters {a, b, d} on every member",
      async () => (await Promise.all(group.map((n) => status(n.http)))).every((s) => JSON.stringify(sorted(s.voters)) === JSON.stringify(voters)),
      10_000
    )

    // Stop every member at once; each must exit on its own (cleanly) within a few seconds.
    const exits = await Promise.all(group.map((n) => h.sigterm(n, 10_000)))
    for (const [i, n] of group.entries()) {
      expect.soft(exits[i], `${n.name} (pid ${n.pid}) exits with code 0 within 10 s of SIGTERM`).toEqual({ code: 0, signal: null })
    }
    for (const n of group) await h.kill9AndWait(n) // only stragglers: the soft check above has failed for them

    for (const n of group) h.restart(n)
    await Promise.all(group.map((n) => waitUp(n)))
    const again = await waitForLeader(group, 20_000)
    for (const s of again.statuses) expect(sorted(s.voters), `voters on ${s.node} after restart`).toEqual(voters)
    await waitLeaderHttpKnown(group, again.leader)
    for (const [i, job] of jobs.entries()) {
      const r = await emit(group[i % 3].http, getStatus(job.id))
      expect(r.json.status, `job ${job.id} after restart: ${r.text}`).toBe(job.end.status)
    }
    const next = await submit(b.http, transferLeader(again.leader.raft))
    expect(BigInt(next) > BigInt(removeId), `new job id ${next} after ${removeId}`).toBe(true)
  }, 120_000)

  it("with a majority down, Emit at the survivor answers failed with 'no leader is known' within a few seconds, never hanging", async ({ h }) => {
    const nodes = await h.startCluster(3)
    const view = await waitForLeader(nodes)
    await waitLeaderHttpKnown(nodes, view.leader)
    const [survivor, other] = others(nodes, view.leader)

    await Promise.all([h.kill9AndWait(view.leader), h.kill9AndWait(other)])
    // Right after the kill the survivor may still believe in the dead leader: still no hang.
    const t0 = Date.now()
    const early = await emit(survivor.http, transferLeader(survivor.raft), 10_000)
    expect(Date.now() - t0).toBeLessThan(5000)
    expect(early.httpStatus).toBe(200)
    expect(early.json.status).toBe("failed")

    await waitFor("the survivor to forget the dead leader", async () => (await status(survivor.http)).leader === null, 10_000)
    for (const body of [transferLeader(survivor.raft), getStatus("1")]) {
      const started = Date.now()
      const r = await emit(survivor.http, body, 10_000)
      const took = Date.now() - started
      expect(r.httpStatus).toBe(200)
      expect(r.json, r.text).toMatchObject({ status: "failed", error_code: "70002" })
      expect(r.json.error_info).toMatch(/no cluster_mgr leader is known/)
      expect(took, `answered in ${took} ms`).toBeLessThan(5000)
    }
  }, 60_000)

  it("each malformed request gets its error: 200 with error_code 70001 naming the field, 405, 404 and 413", async ({ h }) => {
    const [node] = await h.startCluster(1, { http_max_body_bytes: 10_000 })
    await waitForLeader([node])
    const outsider = `${host}:1`

    const cases: Array<{ what: string; body: string | object; info: RegExp }> = [
      { what: "bad JSON", body: '{"job_type": "get_status", ', info: /JSON parse error/ },
      { what: "a JSON array body", body: "[]", info: /JSON object/ },
      { what: "missing job_type", body: { version: "1.0", paras: {} }, info: /job_type/ },
      { what: "empty job_type", body: envelope(""), info: /job_type/ },
      { what: "unknown job_type", body: envelope("make_coffee"), info: /Unrecongnized job type/ },
      { what: "raft_mission without task_type", body: envelope("raft_mission", { peer: outsider }), info: /paras\.task_type/ },
      { what: "unknown task_type", body: raftMission("reboot_world", {}), info: /paras\.task_type/ },
      { what: "add_peer of 'abc'", body: addPeer("abc"), info: /paras\.peer/ },
      { what: "add_peer of a member", body: addPeer(node.raft), info: /paras\.peer.*already in the group/ },
      { what: "remove_peer of a non-member", body: removePeer(outsider), info: /paras\.peer.*not in the group/ },
      { what: "transfer_leader to a non-member", body: transferLeader(outsider), info: /paras\.target_leader/ },
      { what: "get_status without job_id", body: envelope("get_status"), info: /job_id/ },
      {
        what: "a lone surrogate in job_id",
        body: '{"version":"1.0","job_type":"get_status","job_id":"\\ud800","paras":{}}',
        info: /lone UTF-16 surrogate \(U\+D800\) in job_id/
      }
    ]
    for (const c of cases) {
      const r = await emit(node.http, c.body)
      expect(r.httpStatus, c.what).toBe(200)
      expect(r.json, `${c.what}: ${r.text}`).toMatchObject({ status: "failed", error_code: "70001", attachment: null })
      expect(r.json.error_info, c.what).toMatch(c.info)
      expect(r.json.job_id, `${c.what}: no job was created`).toBeUndefined()
      expect(r.text, `${c.what}: the reply is Unicode text`).not.toMatch(/\\u[dD][89a-fA-F]/)
    }

    const unknown = await emit(node.http, getStatus("987654321"))
    expect(unknown.httpStatus).toBe(200)
    expect(unknown.json.status).toBe("failed")
    expect(unknown.json.error_info).toContain("987654321")

    expect((await request("GET", node.http, "/HttpService/Emit")).httpStatus).toBe(405)
    expect((await request("GET", node.http, "/no/such/path")).httpStatus).toBe(404)
    expect((await request("POST", node.http, "/no/such/path", "{}")).httpStatus).toBe(404)
    const big = JSON.stringify(envelope("get_status", { filler: "x".repeat(20_000) }, "1"))
    const tooBig = await emit(node.http, big)
    expect(tooBig.httpStatus).toBe(413)
    // The node still serves after all that.
    expect((await emit(node.http, envelope("get_cluster_mgr_status"))).json.status).toBe("done")
  }, 60_000)

  it("start-up errors exit with code 2 and a one-line message: unknown cnf key (key and line), port in use (the port), unusable data dir (the path)", async ({ h }) => {
    const startBad = async (name: string, edit: (settings: Record<string, string | number>, spec: Awaited<ReturnType<Harness["allocate"]>>) => string) => {
      const spec = await h.allocate(name)
      const settings = h.cnfSettings(spec, [spec.raft])
      fs.writeFileSync(spec.cnfPath, edit(settings, spec))
      const node = h.startNode(spec)
      const exit = await node.waitExit(30_000)
      return { spec, node, exit, stderr: node.stderr.trim() }
    }
    const render = (settings: Record<string, string | number>) => Object.entries(settings).map(([k, v]) => `${k} = ${v}`)

    const busy = net.createServer()
    const busyPort = await new Promise<number>((resolve) =>
      busy.listen({ host, port: 0 }, () => resolve((busy.address() as net.AddressInfo).port))
    )
    try {
      const [unknownKey, httpBusy, raftBusy, badDir] = await Promise.all([
        startBad("unknown-key", (settings) => {
          const lines = render(settings)
          lines.splice(2, 0, "no_such_key = 1") // line 3
          return lines.join("\n") + "\n"
        }),
        startBad("http-busy", (settings) => render({ ...settings, brpc_http_port: busyPort }).join("\n") + "\n"),
        startBad("raft-busy", (settings) => {
          const self = `${host}:${busyPort}`
          return render({ ...settings, brpc_raft_port: busyPort, raft_group_member_init_config: `${self}:0,` }).join("\n") + "\n"
        }),
        startBad("bad-dir", (settings, spec) => {
          const file = path.join(spec.dir, "a-regular-file")
          fs.writeFileSync(file, "not a directory\n")
          return render({ ...settings, cluster_mgr_tmp_data_path: path.join(file, "data") }).join("\n") + "\n"
        })
      ])

      for (const r of [unknownKey, httpBusy, raftBusy, badDir]) {
        expect(r.exit, `${r.spec.name} exits within 30 s: ${r.stderr}`).toEqual({ code: 2, signal: null })
        expect(r.stderr.split("\n"), `${r.spec.name}: one line on stderr`).toHaveLength(1)
      }
      expect(unknownKey.stderr).toContain("no_such_key")
      expect(unknownKey.stderr).toContain("line 3")
      expect(httpBusy.stderr).toContain(String(busyPort))
      expect(raftBusy.stderr).toContain(String(busyPort))
      expect(badDir.stderr).toContain(path.join(badDir.spec.dir, "a-regular-file", "data"))
    } finally {
      await new Promise<void>((resolve) => busy.close(() => resolve()))
    }
  }, 60_000)
})
