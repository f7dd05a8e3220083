import { type ChildProcess, spawn } from "node:child_process"
import { emitPath, type HttpReply, httpRequest } from "../support/http.js"
import * as fs from "node:fs"
import { freePort } from "../support/freePort.js"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/**
 * Real-process harness for the integration tests: every node is its own OS process
 * (`node bin/cluster_mgr.mjs <cnf>`) on 127.0.0.1, with free ports, its own temporary data
 * directory and log file. A Harness owns everything it started and removes it all (kill -9 by
 * pid, temp dirs deleted) in `cleanup`, which the tests call from afterEach even on failure.
 */

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
/** The node executable; CLUSTER_MGR_IT_BIN points the suite at another build (e.g. a patched copy). */
export const binPath = process.env.CLUSTER_MGR_IT_BIN ?? path.join(repoRoot, "bin/cluster_mgr.mjs")
export const host = "127.0.0.1"

/** Fast Raft timings for tests (config.ts: heartbeat must be below the election timeout). */
export const fastTimings: Readonly<Record<string, string | number>> = {
  raft_election_timeout_ms: 300,
  raft_heartbeat_interval_ms: 50,
  raft_tick_ms: 10
}
export const electionTimeoutMs = 300

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// ------------------------------------------------------------------------------------- ports

export { freePort }

// ------------------------------------------------------------------------------- processes

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** Where one node lives: ports, files. Survives restarts of its process. */
export interface NodeSpec {
  readonly name: string
  readonly httpPort: number
  readonly raftPort: number
  /** "127.0.0.1:<http port>" */
  readonly http: string
  /** "127.0.0.1:<raft port>": the node's name in Raft and in raft_mission paras. */
  readonly raft: string
  readonly dir: string
  readonly cnfPath: string
  readonly dataDir: string
  readonly logFile: string
}

const outputCap = 64 * 1024

/** One node: its spec and its current (or last) process. */
export class ClusterNode {
  proc!: ChildProcess
  exit: Exit | undefined
  exited!: Promise<Exit>
  /** Resolves once the process has exited and its output streams have ended. */
  closed: Promise<void> = Promise.resolve()
  stdout = ""
  stderr = ""
  /** Every pid this node has had, oldest first. */
  readonly pids: Array<number> = []

  constructor(readonly spec: NodeSpec) {}

  get name(): string {
    return this.spec.name
  }
  get http(): string {
    return this.spec.http
  }
  get raft(): string {
    return this.spec.raft
  }
  get pid(): number {
    return this.proc.pid!
  }
  get alive(): boolean {
    return this.exit === undefined
  }

  /**
   * Spawns the process on the spec's cnf (used for the first start and for restarts), with
   * `nodeArgs` (options for node itself) before the bin.
   */
  spawn(nodeArgs: ReadonlyArray<string> = []): void {
    if (this.exit === undefined && this.proc !== undefined) throw new Error(`${this.name} is still running (pid ${this.pid})`)
    const proc = spawn(process.execPath, [...nodeArgs, binPath, this.spec.cnfPath], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NODE_OPTIONS: "" }
    })
    this.proc = proc
    this.exit = undefined
    this.stdout = ""
    this.stderr = ""
    if (proc.pid === undefined) throw new Error(`could not spawn ${this.name}`)
    this.pids.push(proc.pid)
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => (this.stdout = (this.stdout + d).slice(-outputCap)))
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (this.stderr = (this.stderr + d).slice(-outputCap)))
    this.exited = new Promise<Exit>((resolve) => {
      proc.once("exit", (code, signal) => {
        this.exit = { code, signal }
        resolve(this.exit)
      })
    })
    // Output may arrive after "exit"; "close" is after both streams end.
    this.closed = new Promise<void>((resolve) => proc.once("close", () => resolve()))
  }

  /** The exit, or undefined if the process is still running after `timeoutMs`. */
  async waitExit(timeoutMs: number): Promise<Exit | undefined> {
    const exit = await Promise.race([this.exited, sleep(timeoutMs).then(() => undefined)])
    if (exit !== undefined) await Promise.race([this.closed, sleep(1000)])
    return exit
  }

  /** The last `lines` lines of the node's log file (empty if none). */
  logTail(lines = 40): string {
    try {
      return fs.readFileSync(this.spec.logFile, "utf8").split("\n").slice(-lines - 1).join("\n")
    } catch {
      return "(no log file)"
    }
  }
}

/** Signals a pid; false if it is already gone. */
const signal = (pid: number, sig: NodeJS.Signals): boolean => {
  try {
    process.kill(pid, sig)
    return true
  } catch {
    return false
  }
}

export const kill9 = (pid: number): boolean => signal(pid, "SIGKILL")
export const sigstop = (pid: number): boolean => signal(pid, "SIGSTOP")
export const sigcont = (pid: number): boolean => signal(pid, "SIGCONT")

/** Every process any harness in this worker started, killed if the worker exits. */
const everyPid = new Set<number>()
process.once("exit", () => {
  for (const pid of everyPid) kill9(pid)
})

/** kill -9 every process any harness of this worker started and did not see exit (afterAll). */
export const killAllStarted = (): void => {
  for (const pid of everyPid) kill9(pid)
  everyPid.clear()
}

/** Renders a cnf file in src/local.ts's format: `name = value` lines. */
export const renderCnf = (settings: Readonly<Record<string, string | number>>): string =>
  Object.entries(settings)
    .map(([key, value]) => `${key} = ${value}`)
    .join("\n") + "\n"

/** Klustron's member list: `ip:raft_port:0,` repeated, trailing comma included. */
export const memberList = (members: ReadonlyArray<string>): string => members.map((m) => `${m}:0,`).join("")

export class Harness {
  readonly nodes: Array<ClusterNode> = []
  private readonly dirs: Array<string> = []
  private closed = false

  private ensureOpen(): void {
    if (this.closed) throw new Error("harness already cleaned up (the test timed out?)")
  }

  /** A temporary directory removed by cleanup. */
  tempDir(prefix = "cluster_mgr-it-"): string {
    this.ensureOpen()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
    this.dirs.push(dir)
    return dir
  }

  /** Ports and paths for a node; no file is written yet. */
  async allocate(name: string): Promise<NodeSpec> {
    this.ensureOpen()
    const httpPort = await freePort()
    const raftPort = await freePort()
    const dir = this.tempDir(`cluster_mgr-it-${name}-`)
    return {
      name,
      httpPort,
      raftPort,
      http: `${host}:${httpPort}`,
      raft: `${host}:${raftPort}`,
      dir,
      cnfPath: path.join(dir, "cluster_mgr.cnf"),
      dataDir: path.join(dir, "data"),
      logFile: path.join(dir, "cluster_mgr.log")
    }
  }

  /** The cnf settings of `spec` with `members` as raft_group_member_init_config. */
  cnfSettings(
    spec: NodeSpec,
    members: ReadonlyArray<string>,
    extra: Readonly<Record<string, string | number>> = {}
  ): Record<string, string | number> {
    return {
      local_ip: host,
      brpc_http_port: spec.httpPort,
      brpc_raft_port: spec.raftPort,
      raft_group_member_init_config: memberList(members),
      cluster_mgr_tmp_data_path: spec.dataDir,
      log_file: spec.logFile,
      ...fastTimings,
      ...extra
    }
  }

  writeCnf(spec: NodeSpec, members: ReadonlyArray<string>, extra: Readonly<Record<string, string | number>> = {}): void {
    fs.writeFileSync(spec.cnfPath, renderCnf(this.cnfSettings(spec, members, extra)))
  }

  /** Starts a node process on its spec's cnf (written beforehand); `nodeArgs` as in spawn. */
  startNode(spec: NodeSpec, nodeArgs: ReadonlyArray<string> = []): ClusterNode {
    this.ensureOpen()
    const node = new ClusterNode(spec)
    this.nodes.push(node)
    node.spawn(nodeArgs)
    everyPid.add(node.pid)
    return node
  }

  /** Starts the node's process again: same cnf, same data directory. */
  restart(node: ClusterNode): ClusterNode {
    this.ensureOpen()
    node.spawn()
    everyPid.add(node.pid)
    return node
  }

  /** Allocates `count` nodes that all list each other, writes their cnf and starts them. */
  async startCluster(count: number, extra: Readonly<Record<string, string | number>> = {}): Promise<Array<ClusterNode>> {
    const specs: Array<NodeSpec> = []
    for (let i = 0; i < count; i++) specs.push(await this.allocate(`n${i + 1}`))
    const members = specs.map((s) => s.raft)
    for (const spec of specs) this.writeCnf(spec, members, extra)
    const nodes = specs.map((spec) => this.startNode(spec))
    await Promise.all(nodes.map((n) => waitUp(n)))
    return nodes
  }

  kill9(node: ClusterNode): void {
    kill9(node.pid)
  }

  /** kill -9 and wait until the process is gone. */
  async kill9AndWait(node: ClusterNode): Promise<void> {
    if (!node.alive) return
    kill9(node.pid)
    const exit = await node.waitExit(10_000)
    if (exit === undefined) throw new Error(`${node.name} (pid ${node.pid}) survived kill -9`)
  }

  sigstop(node: ClusterNode): void {
    sigstop(node.pid)
  }

  sigcont(node: ClusterNode): void {
    sigcont(node.pid)
  }

  /** SIGTERM, then the exit within `timeoutMs`, or undefined if it did not exit (still running). */
  async sigterm(node: ClusterNode, timeoutMs = 10_000): Promise<Exit | undefined> {
    if (!node.alive) return node.exit
    signal(node.pid, "SIGTERM")
    return node.waitExit(timeoutMs)
  }

  /** Prints the tail of every node's log and stderr (called for a failed test). */
  dumpLogs(title: string): void {
    const parts = [`===== ${title}: node logs =====`]
    for (const n of this.nodes) {
      parts.push(
        `----- ${n.name} http ${n.http} raft ${n.raft} pids ${n.pids.join(",")} exit ${JSON.stringify(n.exit ?? "running")} -----`,
        n.logTail(40)
      )
      if (n.stderr.trim() !== "") parts.push(`[stderr] ${n.stderr.trim().split("\n").slice(-20).join("\n")}`)
      if (n.stdout.trim() !== "") parts.push(`[stdout] ${n.stdout.trim().split("\n").slice(-10).join("\n")}`)
    }
    console.error(parts.join("\n"))
  }

  /** kill -9 every process still alive (SIGSTOPped ones too), wait for them, remove the temp dirs. */
  async cleanup(): Promise<void> {
    this.closed = true
    for (const n of this.nodes) {
      if (n.alive) kill9(n.pid)
    }
    await Promise.all(
      this.nodes.map(async (n) => {
        if (n.alive && (await n.waitExit(5000)) === undefined) console.error(`pid ${n.pid} (${n.name}) did not die`)
        for (const pid of n.pids) everyPid.delete(pid)
      })
    )
    for (const dir of this.dirs) fs.rmSync(dir, { recursive: true, force: true })
  }
}

// ------------------------------------------------------------------------------------ HTTP

export { emitPath, type HttpReply } from "../support/http.js"

/** One HTTP request, no keep-alive (nodes get killed), bounded by `timeoutMs`. */
export const request = (method: string, address: string, urlPath: string, body?: string, timeoutMs = 15_000): Promise<HttpReply> =>
  httpRequest(method, address, urlPath, body, timeoutMs)

/** POST /HttpService/Emit; an object is sent as JSON, a string as is. */
export const emit = (address: string, body: string | object, timeoutMs = 15_000): Promise<HttpReply> =>
  request("POST", address, emitPath, typeof body === "string" ? body : JSON.stringify(body), timeoutMs)

/** The node's GET /status object. */
export interface NodeStatus {
  readonly node: string
  readonly http: string
  readonly role: string
  readonly term: number
  readonly leader: string | null
  readonly leader_http: string | null
  readonly commit_index: number
  readonly applied_index: number
  readonly voters: Array<string>
  readonly learners: Array<string>
  readonly joint: boolean
  readonly peers: Array<{ peer: string; http: string | null; match_index: number; last_contact_ms: number }>
}

export const status = async (address: string, timeoutMs = 3000): Promise<NodeStatus> => {
  const reply = await request("GET", address, "/status", undefined, timeoutMs)
  if (reply.httpStatus !== 200 || reply.json === undefined) throw new Error(`GET /status at ${address}: ${reply.httpStatus} ${reply.text}`)
  return reply.json as NodeStatus
}

/** The Klustron envelope around a job_type and paras. */
export const envelope = (jobType: string, paras: Record<string, unknown> = {}, jobId = ""): Record<string, unknown> => ({
  version: "1.0",
  job_id: jobId,
  job_type: jobType,
  timestamp: "1435749309",
  user_name: "kunlun_test",
  paras
})

export const raftMission = (taskType: string, paras: Record<string, string>) =>
  envelope("raft_mission", { task_type: taskType, ...paras })
export const transferLeader = (target: string) => raftMission("transfer_leader", { target_leader: target })
export const addPeer = (peer: string) => raftMission("add_peer", { peer })
export const removePeer = (peer: string) => raftMission("remove_peer", { peer })
export const getStatus = (jobId: string) => envelope("get_status", {}, jobId)

// ----------------------------------------------------------------------------------- waits

/**
 * Polls `probe` until it returns something other than undefined/false, or throws after
 * `timeoutMs` naming what was awaited and the last value or error seen.
 */
export const waitFor = async <A>(
  what: string,
  probe: () => Promise<A | undefined | false> | A | undefined | false,
  timeoutMs: number,
  intervalMs = 100
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  let last: unknown = undefined
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined && value !== false) return value
      last = value
    } catch (e) {
      if (e instanceof Fatal) throw e
      last = e instanceof Error ? `error: ${e.message}` : e
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(last)}`)
    }
    await sleep(intervalMs)
  }
}

/** Waits until the node answers GET /status (start-up takes a few seconds); fails fast if it exits. */
export const waitUp = (node: ClusterNode, timeoutMs = 30_000): Promise<NodeStatus> =>
  waitFor(
    `${node.name} to serve GET /status`,
    async () => {
      if (!node.alive) throw new Error(`${node.name} exited ${JSON.stringify(node.exit)}: ${node.stderr.trim()}`)
      return await status(node.http, 1000)
    },
    timeoutMs,
    100
  ).catch((e: Error) => {
    if (!node.alive) throw new Error(`${node.name} exited ${JSON.stringify(node.exit)} before serving: ${node.stderr.trim()}`)
    throw e
  })

export interface LeaderView {
  readonly leader: ClusterNode
  readonly term: number
  readonly statuses: Array<NodeStatus>
}

/**
 * Waits until every one of `nodes` answers /status, exactly one of them is leader, and all
 * name it as leader in the same term.
 */
export const waitForLeader = (nodes: ReadonlyArray<ClusterNode>, timeoutMs = 15_000): Promise<LeaderView> =>
  waitFor(
    `one leader agreed by ${nodes.map((n) => n.name).join(", ")}`,
    async () => {
      const statuses = await Promise.all(nodes.map((n) => status(n.http, 1000)))
      const leaders = statuses.filter((s) => s.role === "leader")
      if (leaders.length !== 1) return undefined
      const [l] = leaders
      if (!statuses.every((s) => s.leader === l.node && s.term === l.term)) return undefined
      const leader = nodes.find((n) => n.raft === l.node)!
      return { leader, term: l.term, statuses }
    },
    timeoutMs,
    50
  )

/**
 * Polls get_status of `jobId` at `address` until the job is done or failed; returns the reply
 * JSON. A reply that names no job (e.g. 70002 "leadership is changing; retry" while a leader
 * takes over) is not the job's status: it is retried, and shown if the wait times out.
 */
export const waitJobEnd = (address: string, jobId: string, timeoutMs = 15_000): Promise<any> =>
  waitFor(
    `job ${jobId} to end (get_status at ${address})`,
    async () => {
      const r = await emit(address, getStatus(jobId), 5000)
      const ended = r.json?.job_id === jobId && (r.json?.status === "done" || r.json?.status === "failed")
      if (!ended) throw new Error(`${r.httpStatus} ${r.text}`)
      return r.json
    },
    timeoutMs,
    100
  )

/** Emit error codes that say "not now, retry": Unavailable (no leader / changing), Busy. */
const retryableCodes = new Set(["70002", "70006"])

/**
 * Submits a job, retrying while the node answers a retryable error (an election under load):
 * for bulk load whose jobs may run twice harmlessly, never where a job's fate is the point.
 */
export const submitRetrying = async (address: string, body: object, timeoutMs = 15_000): Promise<string> =>
  waitFor(
    `${address} to accept ${JSON.stringify(body)}`,
    async () => {
      const r = await emit(address, body)
      if (r.json?.status === "accept" && typeof r.json?.job_id === "string") return r.json.job_id as string
      if (r.httpStatus === 200 && retryableCodes.has(r.json?.error_code)) throw new Error(r.text)
      throw new Fatal(`expected accept from ${address} for ${JSON.stringify(body)}, got ${r.httpStatus} ${r.text}`)
    },
    timeoutMs,
    50
  )

/** An error that ends a waitFor at once instead of being retried. */
export class Fatal extends Error {}

/** Submits a job at `address`, expecting "accept"; returns its job_id. */
export const submit = async (address: string, body: object): Promise<string> => {
  const r = await emit(address, body)
  if (r.httpStatus !== 200 || r.json?.status !== "accept" || typeof r.json?.job_id !== "string") {
    throw new Error(`expected accept from ${address} for ${JSON.stringify(body)}, got ${r.httpStatus} ${r.text}`)
  }
  return r.json.job_id as string
}
