/**
 * The two systems the emit bench compares, behind one interface: a 3-process cluster_mgr group
 * and a 3-member etcd cluster, each on 127.0.0.1 with free ports and temporary data directories,
 * default settings (fsync on, election timeout 1000 ms, heartbeat 100 ms for both).
 *
 * Clients of both route the same way: to the node that reports itself leader (cluster_mgr's
 * GET /status, etcd's POST /v3/maintenance/status), found by probing every node; after any
 * failed request the leader is looked up again, so after a kill the clients move to a survivor.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import type * as http from "node:http"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { request, type Send, sleep } from "./loadgen.js"
import { freePort, host, killAndWait, type Proc, spawnLogged, stopGracefully, tempDir, waitFor } from "./procs.js"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
/** The node executable; BENCH_CM_BIN points the bench at another checkout (A/B comparisons). */
const cmBin = process.env.BENCH_CM_BIN ?? path.join(repoRoot, "bin/cluster_mgr.mjs")
const cmRoot = path.dirname(path.dirname(cmBin))

const newestMtimeMs = (dir: string): number => {
  let newest = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtimeMs(p) : fs.statSync(p).mtimeMs)
  }
  return newest
}

/**
 * Whether bin/cluster_mgr.mjs runs the build (the bundle dist/bin/cluster_mgr.mjs; dist/cli.js in
 * checkouts from before the bundle) rather than the sources through tsx: the launcher's own test,
 * the build stamp at least as new as every file in src/.
 */
export const cmRunsBundle = (): boolean => {
  const stamp = path.join(cmRoot, "dist/.built")
  const bundled = fs.existsSync(path.join(cmRoot, "scripts/bundle.mjs"))
  return (
    fs.existsSync(stamp) &&
    (!bundled || fs.existsSync(path.join(cmRoot, "dist/bin/cluster_mgr.mjs"))) &&
    fs.statSync(stamp).mtimeMs >= newestMtimeMs(path.join(cmRoot, "src"))
  )
}

/**
 * Builds the checkout the bench runs (`npm run build`) when its bundle is missing or stale: its
 * RSS and start-up figures must be the bundle's, not those of tsx compiling the sources.
 */
export const ensureCmBundle = (): void => {
  if (cmRunsBundle()) return
  console.log(`  ${cmRoot}: the bundle is missing or older than src/; running npm run build`)
  const r = spawnSync("npm", ["run", "build"], { cwd: cmRoot, stdio: ["ignore", "inherit", "inherit"] })
  if (r.status !== 0 || !cmRunsBundle()) throw new Error(`npm run build in ${cmRoot} failed or src/ changed meanwhile: no fresh bundle to measure`)
}

/** What a probe of one node says, or undefined when it does not answer. */
export interface Probe {
  readonly leader: boolean
  /** Whether the node knows a leader (itself or another). */
  readonly leaderKnown: boolean
  readonly term: number
  /** The node's own progress: applied index (cluster_mgr), raft index (etcd). */
  readonly index: number
}

export interface SysNode {
  readonly name: string
  /** host:port the clients send to. */
  readonly address: string
  proc: Proc | undefined
}

export interface System {
  readonly name: string
  /** The temporary directory holding every node's data and logs. */
  readonly dir: string
  readonly nodes: ReadonlyArray<SysNode>
  /** Spawns every node; resolves with each node's ms from spawn until it serves status. */
  start(): Promise<Array<number>>
  probe(node: SysNode, timeoutMs?: number): Promise<Probe | undefined>
  /**
   * A closed-loop request sender routed to the leader (see the module comment); a request
   * unanswered after `timeoutMs` (default requestTimeoutMs) fails and the leader is looked up again.
   */
  makeSend(agent: http.Agent, timeoutMs?: number): Send
  /** Why requests failed since the last call, most frequent first (and resets the counts). */
  takeFailures(): Array<[string, number]>
  /** Spawns the node again on its data; resolves with ms from spawn until it serves status. */
  restart(node: SysNode): Promise<number>
  stop(): Promise<void>
}

/**
 * Probes every node in parallel and returns the one that says it leads (highest term). Once a
 * node has claimed leadership, the others get `settleMs` more to answer: a paused (SIGSTOP)
 * node never answers, and waiting out its probe timeout would delay every lookup by that much.
 */
export const findLeader = async (sys: System, probeTimeoutMs = 250, settleMs = 25): Promise<SysNode | undefined> => {
  const probes: Array<Probe | undefined> = sys.nodes.map(() => undefined)
  await new Promise<void>((resolve) => {
    let pending = sys.nodes.length
    let settle: ReturnType<typeof setTimeout> | undefined
    const done = () => {
      if (settle !== undefined) clearTimeout(settle)
      resolve()
    }
    if (pending === 0) return done()
    sys.nodes.forEach((n, i) => {
      sys
        .probe(n, probeTimeoutMs)
        .catch(() => undefined)
        .then((p) => {
          probes[i] = p
          if (--pending === 0) return done()
          if (p?.leader && settle === undefined) settle = setTimeout(done, settleMs)
        })
    })
  })
  let best: { node: SysNode; term: number } | undefined
  probes.forEach((p, i) => {
    if (p?.leader && (best === undefined || p.term > best.term)) best = { node: sys.nodes[i], term: p.term }
  })
  return best?.node
}

export const waitLeader = (sys: System, timeoutMs: number): Promise<SysNode> =>
  waitFor(`a ${sys.name} leader`, () => findLeader(sys), timeoutMs, 20)

/** Waits until the same node has reported itself leader for `stableMs` (polled every 50 ms). */
export const waitStableLeader = async (sys: System, stableMs: number, timeoutMs: number): Promise<SysNode> => {
  const deadline = performance.now() + timeoutMs
  let current: SysNode | undefined
  let since = 0
  for (;;) {
    const l = await findLeader(sys)
    if (l !== current) {
      current = l
      since = performance.now()
    } else if (l !== undefined && performance.now() - since >= stableMs) {
      return l
    }
    if (performance.now() > deadline) throw new Error(`no ${sys.name} leader held for ${stableMs} ms within ${timeoutMs} ms`)
    await sleep(50)
  }
}

/** Waits until `node` answers status, knows a leader and has reached `index`. */
export const waitRejoined = (sys: System, node: SysNode, index: number, timeoutMs: number): Promise<Probe> =>
  waitFor(
    `${sys.name} ${node.name} to rejoin (leader known, index >= ${index})`,
    async () => {
      const p = await sys.probe(node)
      return p !== undefined && p.leaderKnown && p.index >= index ? p : undefined
    },
    timeoutMs,
    20
  )

/** Time from the process's spawn until `serves` holds, polled every 5 ms; fails if it exits. */
const timeUntilServing = async (proc: Proc, what: string, serves: () => Promise<boolean>, timeoutMs: number): Promise<number> => {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    if (proc.exited) throw new Error(`${what}: the process exited (see its log)`)
    if (await serves().catch(() => false)) return performance.now() - proc.spawnedAt
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(5)
  }
}

/**
 * The client side shared by both systems: a send routed to the current leader, rediscovered
 * (one probe round at a time, shared by all clients) after any failure.
 */
const leaderRouted = (
  sys: System,
  failures: Map<string, number>,
  sendTo: (node: SysNode, client: number) => Promise<string | undefined>
): Send => {
  const failed = (reason: string) => failures.set(reason, (failures.get(reason) ?? 0) + 1)
  let leader: SysNode | undefined
  let discovering: Promise<SysNode | undefined> | undefined
  /**
   * Probe rounds start every 10 ms (at most 25 at once) until one finds a leader: a round that
   * waits for a paused node's probe to time out does not hold back the next one.
   */
  const discover = (): Promise<SysNode | undefined> => {
    if (discovering === undefined) {
      discovering = new Promise<SysNode | undefined>((resolve) => {
        const deadline = performance.now() + 5000
        let inFlight = 0
        let finished = false
        const finish = (found: SysNode | undefined) => {
          if (finished) return
          finished = true
          clearInterval(ticker)
          resolve(found)
        }
        const round = () => {
          if (finished) return
          if (performance.now() > deadline) return finish(undefined)
          if (inFlight >= 25) return
          inFlight++
          findLeader(sys).then(
            (found) => {
              inFlight--
              if (found !== undefined) finish(found)
            },
            () => inFlight--
          )
        }
        const ticker = setInterval(round, 10)
        round()
      }).finally(() => {
        discovering = undefined
      })
    }
    return discovering
  }
  return async (client) => {
    let target = leader
    if (target === undefined) {
      target = await discover()
      if (target === undefined) {
        failed("no node reported itself leader within 5 s")
        return undefined
      }
      leader = target
    }
    let reason: string | undefined
    try {
      reason = await sendTo(target, client)
    } catch (e) {
      reason = `${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`
    }
    if (reason === undefined) return target.address
    failed(reason)
    if (leader === target) leader = undefined
    return undefined
  }
}

const takeFailures = (failures: Map<string, number>): Array<[string, number]> => {
  const out = [...failures.entries()].sort((a, b) => b[1] - a[1])
  failures.clear()
  return out
}

// ------------------------------------------------------------------------------ cluster_mgr

export interface CmNode extends SysNode {
  readonly raft: string
  readonly cnf: string
  readonly logFile: string
}

interface CmStatus {
  readonly role: string
  readonly term: number
  readonly leader: string | null
  readonly applied_index: number
  readonly commit_index: number
}

export const requestTimeoutMs = 10_000

/**
 * Extra node arguments for the cluster_mgr processes (space-separated), e.g.
 * BENCH_CM_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile them; when set, nodes
 * are stopped with SIGTERM (so that profiles get written) before SIGKILL. The leader kills of
 * the failover run stay kill -9.
 */
const cmNodeArgs = (process.env.BENCH_CM_NODE_ARGS ?? "").split(" ").filter((a) => a !== "")

/** Extra cnf lines for experiments, e.g. BENCH_CM_CNF="raft_tick_ms=2,raft_lease_read=true". */
const cmCnfExtra = (process.env.BENCH_CM_CNF ?? "")
  .split(",")
  .filter((kv) => kv.includes("="))
  .map((kv) => kv.replace("=", " = "))

const noForwarding = { "x-cluster-mgr-forwarded": "1" }

export class ClusterMgr implements System {
  readonly name = "cluster_mgr"
  nodes: Array<CmNode> = []
  private readonly agent: http.Agent
  dir = ""

  constructor(agent: http.Agent) {
    this.agent = agent
  }

  /** Nodes started beside the group (startJoiner), not in `nodes`; stopped with the group. */
  readonly extras: Array<CmNode> = []

  /** A node's directory and cnf (empty data directory), bootstrapping with `members` (ip:raft_port). */
  private writeNode(name: string, p: { http: number; raft: number }, members: ReadonlyArray<string>): CmNode {
    const dir = path.join(this.dir, name)
    fs.mkdirSync(dir)
    const cnf = path.join(dir, "cluster_mgr.cnf")
    const logFile = path.join(dir, "cluster_mgr.log")
    fs.writeFileSync(
      cnf,
      [
        `local_ip = ${host}`,
        `brpc_http_port = ${p.http}`,
        `brpc_raft_port = ${p.raft}`,
        `raft_group_member_init_config = ${members.map((m) => `${m}:0,`).join("")}`,
        `cluster_mgr_tmp_data_path = ${path.join(dir, "data")}`,
        `log_file = ${logFile}`,
        ...cmCnfExtra
      ].join("\n") + "\n"
    )
    return { name, address: `${host}:${p.http}`, raft: `${host}:${p.raft}`, cnf, logFile, proc: undefined }
  }

  async start(): Promise<Array<number>> {
    this.dir = tempDir("emit-bench-cm-")
    const ports = []
    for (let i = 0; i < 3; i++) ports.push({ http: await freePort(), raft: await freePort() })
    const members = ports.map((p) => `${host}:${p.raft}`)
    this.nodes = ports.map((p, i) => this.writeNode(`cm${i + 1}`, p, members))
    for (const n of this.nodes) this.spawn(n)
    return Promise.all(this.nodes.map((n) => this.untilServing(n)))
  }

  /**
   * Starts one more node on an empty data directory whose cnf lists the group's members and
   * itself (docs/operations.md, "Add a node"), ready for add_peer; resolves once it serves
   * /status, with the ms from spawn.
   */
  async startJoiner(): Promise<{ node: CmNode; ms: number }> {
    const p = { http: await freePort(), raft: await freePort() }
    const name = `cm${this.nodes.length + this.extras.length + 1}`
    const node = this.writeNode(name, p, [...this.nodes.map((n) => n.raft), `${host}:${p.raft}`])
    this.extras.push(node)
    this.spawn(node)
    return { node, ms: await this.untilServing(node) }
  }

  private spawn(n: CmNode): void {
    n.proc = spawnLogged(process.execPath, [...cmNodeArgs, cmBin, n.cnf], path.join(path.dirname(n.cnf), "stdout.log"), path.dirname(path.dirname(cmBin)))
  }

  private untilServing(n: CmNode): Promise<number> {
    return timeUntilServing(
      n.proc!,
      `${n.name} to serve /status`,
      async () => (await request(this.agent, n.address, "GET", "/status", undefined, 1000)).status === 200,
      60_000
    )
  }

  async status(n: SysNode, timeoutMs = 1000): Promise<CmStatus | undefined> {
    try {
      const r = await request(this.agent, n.address, "GET", "/status", undefined, timeoutMs)
      return r.status === 200 ? (JSON.parse(r.body) as CmStatus) : undefined
    } catch {
      return undefined
    }
  }

  async probe(n: SysNode, timeoutMs = 1000): Promise<Probe | undefined> {
    const s = await this.status(n, timeoutMs)
    return s === undefined
      ? undefined
      : { leader: s.role === "leader", leaderKnown: s.leader !== null, term: s.term, index: s.applied_index }
  }

  makeSend(agent: http.Agent, timeoutMs = requestTimeoutMs): Send {
    const bodies = new Map<string, string>()
    const body = (raft: string): string => {
      let b = bodies.get(raft)
      if (b === undefined) {
        b = JSON.stringify({
          version: "1.0",
          job_id: "",
          job_type: "raft_mission",
          timestamp: "1",
          user_name: "bench",
          paras: { task_type: "transfer_leader", target_leader: raft }
        })
        bodies.set(raft, b)
      }
      return b
    }
    return leaderRouted(this, this.failures, async (node) => {
      // The clients route to the leader themselves: a follower must not forward the job, which
      // names the node it was sent to and would become a real transfer to that follower (a
      // burst of those after each leadership change moved the leader around and queued
      // transfers to a paused node). Marked as forwarded, a follower answers 70002 instead and
      // the client looks the leader up again.
      const r = await request(agent, node.address, "POST", "/HttpService/Emit", body((node as CmNode).raft), timeoutMs, noForwarding)
      if (r.status !== 200) return `HTTP ${r.status}`
      const reply = JSON.parse(r.body) as { status: string; error_code: string; error_info: string }
      return reply.status === "accept" ? undefined : `${reply.status} ${reply.error_code}: ${reply.error_info}`
    })
  }

  private readonly failures = new Map<string, number>()
  takeFailures(): Array<[string, number]> {
    return takeFailures(this.failures)
  }

  async restart(n: SysNode): Promise<number> {
    this.spawn(n as CmNode)
    return this.untilServing(n as CmNode)
  }

  async stop(): Promise<void> {
    const stop = (p: Proc) => (cmNodeArgs.length === 0 ? killAndWait(p) : stopGracefully(p, 10_000))
    await Promise.all([...this.nodes, ...this.extras].map((n) => (n.proc ? stop(n.proc) : Promise.resolve())))
  }
}

// ------------------------------------------------------------------------------------- etcd

const etcdCandidates = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
const whichEtcd = (): string | undefined => {
  const found = etcdCandidates.find((p) => fs.existsSync(p))
  if (found !== undefined) return found
  const r = spawnSync("sh", ["-c", "command -v etcd"], { encoding: "utf8" })
  const p = r.stdout?.trim()
  return r.status === 0 && p ? p : undefined
}

const tail = (text: string, lines: number): string =>
  text
    .trim()
    .split("\n")
    .slice(-lines)
    .map((l) => `    ${l}`)
    .join("\n")

const aptGet = (args: ReadonlyArray<string>): boolean => {
  console.log(`  running: apt-get ${args.join(" ")}`)
  const r = spawnSync("apt-get", args, {
    encoding: "utf8",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    timeout: 300_000,
    maxBuffer: 64 * 1024 * 1024
  })
  if (r.status === 0) return true
  console.log(`  apt-get ${args[0]} failed (${r.error?.message ?? `exit ${r.status}`}):\n${tail(`${r.stdout ?? ""}\n${r.stderr ?? ""}`, 6)}`)
  return false
}

/** The etcd binary, installing Debian's etcd-server when it is missing; undefined if that fails. */
export const ensureEtcd = (): string | undefined => {
  const found = whichEtcd()
  if (found !== undefined) return found
  console.log("etcd is not installed: installing Debian's etcd-server")
  if (!aptGet(["install", "-y", "-q", "etcd-server"])) {
    if (aptGet(["update", "-q"])) aptGet(["install", "-y", "-q", "etcd-server"])
  }
  const after = whichEtcd()
  console.log(after ? `  etcd installed: ${after}` : "  etcd is unavailable")
  return after
}

export interface EtcdNode extends SysNode {
  readonly peer: string
  readonly dataDir: string
  readonly logFile: string
  readonly args: ReadonlyArray<string>
}

interface EtcdStatus {
  readonly header: { readonly member_id: string; readonly raft_term: string }
  readonly leader?: string
  readonly raftIndex?: string
  readonly raftTerm?: string
}

export class Etcd implements System {
  readonly name = "etcd"
  nodes: Array<EtcdNode> = []
  dir = ""
  private readonly agent: http.Agent
  private readonly bin: string
  private counter = 0
  private readonly value = Buffer.from("v".repeat(100)).toString("base64")

  constructor(agent: http.Agent, bin: string) {
    this.agent = agent
    this.bin = bin
  }

  version(): string {
    const r = spawnSync(this.bin, ["--version"], { encoding: "utf8" })
    return (r.stdout ?? "").split("\n")[0].trim()
  }

  async start(): Promise<Array<number>> {
    this.dir = tempDir("emit-bench-etcd-")
    const ports = []
    for (let i = 0; i < 3; i++) ports.push({ client: await freePort(), peer: await freePort() })
    const cluster = ports.map((p, i) => `e${i + 1}=http://${host}:${p.peer}`).join(",")
    const token = `emit-bench-${process.pid}-${Date.now()}`
    this.nodes = ports.map((p, i) => {
      const name = `e${i + 1}`
      const dataDir = path.join(this.dir, name)
      const client = `http://${host}:${p.client}`
      const peer = `http://${host}:${p.peer}`
      const args = [
        "--name", name,
        "--data-dir", dataDir,
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", cluster,
        "--initial-cluster-token", token,
        "--initial-cluster-state", "new"
      ]
      return { name, address: `${host}:${p.client}`, peer, dataDir, logFile: path.join(this.dir, `${name}.log`), args, proc: undefined }
    })
    for (const n of this.nodes) this.spawn(n)
    return Promise.all(this.nodes.map((n) => this.untilServing(n)))
  }

  private spawn(n: EtcdNode): void {
    n.proc = spawnLogged(this.bin, n.args, n.logFile, this.dir)
  }

  private untilServing(n: EtcdNode): Promise<number> {
    return timeUntilServing(n.proc!, `${n.name} to serve /v3/maintenance/status`, async () => (await this.status(n, 1000)) !== undefined, 60_000)
  }

  async status(n: SysNode, timeoutMs = 1000): Promise<EtcdStatus | undefined> {
    try {
      const r = await request(this.agent, n.address, "POST", "/v3/maintenance/status", "{}", timeoutMs)
      return r.status === 200 ? (JSON.parse(r.body) as EtcdStatus) : undefined
    } catch {
      return undefined
    }
  }

  async probe(n: SysNode, timeoutMs = 1000): Promise<Probe | undefined> {
    const s = await this.status(n, timeoutMs)
    if (s === undefined) return undefined
    const leader = s.leader ?? "0"
    return {
      leader: leader !== "0" && leader === s.header.member_id,
      leaderKnown: leader !== "0",
      term: Number(s.raftTerm ?? s.header.raft_term ?? 0),
      index: Number(s.raftIndex ?? 0)
    }
  }

  makeSend(agent: http.Agent, timeoutMs = requestTimeoutMs): Send {
    return leaderRouted(this, this.failures, async (node) => {
      const key = Buffer.from(`bench/${this.counter++}`).toString("base64")
      const r = await request(agent, node.address, "POST", "/v3/kv/put", `{"key":"${key}","value":"${this.value}"}`, timeoutMs)
      if (r.status === 200 && r.body.includes('"header"')) return undefined
      return `HTTP ${r.status}: ${r.body.slice(0, 100)}`
    })
  }

  private readonly failures = new Map<string, number>()
  takeFailures(): Array<[string, number]> {
    return takeFailures(this.failures)
  }

  async restart(n: SysNode): Promise<number> {
    this.spawn(n as EtcdNode)
    return this.untilServing(n as EtcdNode)
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => (n.proc ? killAndWait(n.proc) : Promise.resolve())))
  }
}

