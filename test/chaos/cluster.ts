import * as fs from "node:fs"
import {
  type ClusterNode,
  Harness,
  type HttpReply,
  type NodeSpec,
  type NodeStatus,
  request,
  sleep,
  status,
  waitUp
} from "../integration/harness.js"

/**
 * The cluster under test: real cluster_mgr processes started through the integration harness,
 * with fault injection on, plus what the chaos run needs around them: a clock shared with the
 * history, a timeline of every fault, the partition the nemesis wants (re-applied to a node
 * that restarts, since a restarted process forgets its faults), a status monitor that samples
 * every node, and crash detection (an exit nobody asked for).
 */

export interface TimelineEvent {
  readonly t: number
  readonly what: string
}

export interface StatusSample {
  readonly t: number
  readonly node: string
  readonly role: string
  readonly term: number
  readonly leader: string | null
  readonly commit: number
  readonly applied: number
  readonly voters: ReadonlyArray<string>
}

export interface ChaosNode {
  readonly node: ClusterNode
  /** A core member from the start, or the spare that membership churn adds and removes. */
  readonly kind: "core" | "spare"
  down: boolean
  paused: boolean
  /** A restart in progress (spawned, not yet serving). */
  starting: Promise<void> | undefined
}

export interface Crash {
  readonly node: string
  readonly pid: number
  readonly t: number
  readonly exit: string
  readonly stderr: string
}

export interface ClusterOptions {
  readonly nodes: number
  readonly spare: boolean
  readonly cnf: Readonly<Record<string, string | number>>
}

const linkKey = (a: string, b: string): string => (a < b ? `${a}|${b}` : `${b}|${a}`)

export class ChaosCluster {
  readonly h = new Harness()
  readonly members: Array<ChaosNode> = []
  spare: ChaosNode | undefined
  readonly timeline: Array<TimelineEvent> = []
  readonly samples: Array<StatusSample> = []
  readonly crashes: Array<Crash> = []
  /** Pids we killed or are about to kill: their exit is not a crash. */
  private readonly expectedExits = new Set<number>()
  /** Per node (raft address): the peers it drops traffic to and from, as the nemesis wants it. */
  readonly blocks = new Map<string, Set<string>>()
  /** Per node: delayed peers and their delay. */
  readonly delays = new Map<string, Map<string, number>>()
  /** Per node: its slow-disk delay. */
  readonly diskDelays = new Map<string, number>()
  /** When each node could not answer (killed, restarting, paused): requests then may hang or fail. */
  readonly outages: Array<{ node: string; from: number; to: number }> = []
  private readonly openOutages = new Map<string, number>()
  private monitorStop = false
  private monitorDone: Promise<void> = Promise.resolve()
  private cleaned = false
  readonly t0 = performance.now()

  constructor(readonly options: ClusterOptions) {}

  now(): number {
    return performance.now() - this.t0
  }

  log(what: string): void {
    this.timeline.push({ t: this.now(), what })
  }

  get all(): Array<ChaosNode> {
    return this.spare === undefined ? [...this.members] : [...this.members, this.spare]
  }

  byRaft(raft: string): ChaosNode | undefined {
    return this.all.find((n) => n.node.raft === raft)
  }

  name(raft: string): string {
    return this.byRaft(raft)?.node.name ?? raft
  }

  /** Starts the members (and the spare, which lists everyone but is not in anyone's configuration). */
  async start(): Promise<void> {
    const specs: Array<NodeSpec> = []
    for (let i = 0; i < this.options.nodes; i++) specs.push(await this.h.allocate(`n${i + 1}`))
    const spareSpec = this.options.spare ? await this.h.allocate(`s${this.options.nodes + 1}`) : undefined
    const members = specs.map((s) => s.raft)
    const cnf = { raft_fault_injection: "true", ...this.options.cnf }
    for (const spec of specs) this.h.writeCnf(spec, members, cnf)
    if (spareSpec !== undefined) this.h.writeCnf(spareSpec, [...members, spareSpec.raft], cnf)
    for (const spec of specs) this.members.push(this.track(this.h.startNode(spec), "core"))
    if (spareSpec !== undefined) this.spare = this.track(this.h.startNode(spareSpec), "spare")
    this.log(`started ${this.all.map((n) => `${n.node.name}=http ${n.node.http} raft ${n.node.raft} pid ${n.node.pid}`).join(", ")}`)
    await Promise.all(this.all.map((n) => waitUp(n.node, 60_000)))
    this.log("every node serves /status")
  }

  private track(node: ClusterNode, kind: "core" | "spare"): ChaosNode {
    const c: ChaosNode = { node, kind, down: false, paused: false, starting: undefined }
    this.watch(c)
    return c
  }

  /** Records an exit of the current process that nobody asked for. */
  private watch(c: ChaosNode): void {
    const pid = c.node.pid
    void c.node.exited.then((exit) => {
      if (this.expectedExits.has(pid) || this.cleaned) return
      c.down = true
      this.outageStart(c)
      this.crashes.push({ node: c.node.name, pid, t: this.now(), exit: JSON.stringify(exit), stderr: c.node.stderr.slice(-4000) })
      this.log(`CRASH ${c.node.name} pid ${pid} exited by itself: ${JSON.stringify(exit)}`)
    })
  }

  // ------------------------------------------------------------------------------- processes

  private outageStart(c: ChaosNode): void {
    if (!this.openOutages.has(c.node.name)) this.openOutages.set(c.node.name, this.now())
  }

  private outageEnd(c: ChaosNode): void {
    const from = this.openOutages.get(c.node.name)
    if (from === undefined) return
    this.openOutages.delete(c.node.name)
    this.outages.push({ node: c.node.name, from, to: this.now() })
  }

  /** Whether `node` was down, restarting or paused at some time in [from, to]. */
  disturbed(node: string, from: number, to: number): boolean {
    const open = this.openOutages.get(node)
    if (open !== undefined && open <= to) return true
    return this.outages.some((o) => o.node === node && o.from <= to && o.to >= from)
  }

  async kill(c: ChaosNode): Promise<void> {
    if (c.down) return
    this.expectedExits.add(c.node.pid)
    this.outageStart(c)
    c.down = true
    c.paused = false
    this.log(`kill -9 ${c.node.name} (pid ${c.node.pid})`)
    await this.h.kill9AndWait(c.node)
  }

  /** Restarts a killed node and waits until it serves, then re-applies its faults. */
  restart(c: ChaosNode): Promise<void> {
    if (!c.down || this.cleaned) return c.starting ?? Promise.resolve()
    if (c.starting !== undefined) return c.starting
    this.h.restart(c.node)
    this.watch(c)
    this.log(`restart ${c.node.name} (pid ${c.node.pid})`)
    c.starting = (async () => {
      try {
        await waitUp(c.node, 60_000)
        c.down = false
        this.outageEnd(c)
        this.log(`${c.node.name} serves again`)
        await this.reapply(c)
      } catch (e) {
        if (!this.cleaned) this.log(`${c.node.name} did not come back: ${(e as Error).message}`)
      } finally {
        c.starting = undefined
      }
    })()
    return c.starting
  }

  pause(c: ChaosNode): void {
    if (c.down || c.paused) return
    c.paused = true
    this.outageStart(c)
    this.h.sigstop(c.node)
    this.log(`SIGSTOP ${c.node.name} (pid ${c.node.pid})`)
  }

  async resume(c: ChaosNode): Promise<void> {
    if (!c.paused) return
    c.paused = false
    this.h.sigcont(c.node)
    this.outageEnd(c)
    this.log(`SIGCONT ${c.node.name} (pid ${c.node.pid})`)
    // A fault request sent while it was stopped may be served now, in any order: set it again.
    await this.reapply(c)
  }

  // ---------------------------------------------------------------------------------- faults

  /** POST /debug/faults on one node; undefined when it did not answer (down, paused, slow). */
  async fault(c: ChaosNode, body: object, timeoutMs = 1500): Promise<HttpReply | undefined> {
    if (c.down || c.paused) return undefined
    try {
      const r = await request("POST", c.node.http, "/debug/faults", JSON.stringify(body), timeoutMs)
      if (r.httpStatus !== 200) this.log(`faults ${c.node.name} ${JSON.stringify(body)}: HTTP ${r.httpStatus} ${r.text}`)
      return r
    } catch {
      return undefined
    }
  }

  private blocksOf(raft: string): Set<string> {
    let s = this.blocks.get(raft)
    if (s === undefined) this.blocks.set(raft, (s = new Set()))
    return s
  }

  /** `on` drops traffic to and from `peer` (one side of a link; both sides make a clean partition). */
  async block(on: ChaosNode, peer: ChaosNode): Promise<void> {
    this.blocksOf(on.node.raft).add(peer.node.raft)
    await this.fault(on, { action: "block", peer: peer.node.raft })
  }

  async unblock(on: ChaosNode, peer: ChaosNode): Promise<void> {
    this.blocksOf(on.node.raft).delete(peer.node.raft)
    await this.fault(on, { action: "unblock", peer: peer.node.raft })
  }

  /** Every raft.db write of `on` waits `ms` first (a slow disk); 0 removes it. */
  async diskDelay(on: ChaosNode, ms: number): Promise<void> {
    if (ms > 0) this.diskDelays.set(on.node.raft, ms)
    else this.diskDelays.delete(on.node.raft)
    await this.fault(on, { action: "diskDelay", ms })
  }

  async delay(on: ChaosNode, peer: ChaosNode, ms: number): Promise<void> {
    let d = this.delays.get(on.node.raft)
    if (d === undefined) this.delays.set(on.node.raft, (d = new Map()))
    if (ms > 0) d.set(peer.node.raft, ms)
    else d.delete(peer.node.raft)
    await this.fault(on, { action: "delay", peer: peer.node.raft, ms })
  }

  /** Cuts every link between the groups, on both sides. */
  async partition(groups: ReadonlyArray<ReadonlyArray<ChaosNode>>, label: string): Promise<Array<[ChaosNode, ChaosNode]>> {
    const cut: Array<[ChaosNode, ChaosNode]> = []
    for (let i = 0; i < groups.length; i++) {
      for (let j = i + 1; j < groups.length; j++) {
        for (const a of groups[i]) for (const b of groups[j]) cut.push([a, b])
      }
    }
    this.log(`partition ${label}: ${groups.map((g) => `{${g.map((n) => n.node.name).join(",")}}`).join(" ")}`)
    await Promise.all(cut.flatMap(([a, b]) => [this.block(a, b), this.block(b, a)]))
    return cut
  }

  async cutLinks(links: ReadonlyArray<[ChaosNode, ChaosNode]>, label: string, oneSided = false): Promise<void> {
    this.log(`${label}: cut ${links.map(([a, b]) => `${a.node.name}${oneSided ? "-x>" : "x"}${b.node.name}`).join(" ")}`)
    await Promise.all(links.flatMap(([a, b]) => (oneSided ? [this.block(a, b)] : [this.block(a, b), this.block(b, a)])))
  }

  async restoreLinks(links: ReadonlyArray<[ChaosNode, ChaosNode]>, label: string): Promise<void> {
    this.log(`${label}: restore ${links.map(([a, b]) => `${a.node.name}-${b.node.name}`).join(" ")}`)
    await Promise.all(links.flatMap(([a, b]) => [this.unblock(a, b), this.unblock(b, a)]))
  }

  /** Sets a node's faults to what the nemesis wants (after a restart or a SIGCONT). */
  private async reapply(c: ChaosNode): Promise<void> {
    const blocked = this.blocks.get(c.node.raft) ?? new Set()
    const delayed = this.delays.get(c.node.raft) ?? new Map()
    const disk = this.diskDelays.get(c.node.raft) ?? 0
    if (blocked.size === 0 && delayed.size === 0 && disk === 0) {
      await this.fault(c, { action: "heal" })
      return
    }
    await this.fault(c, { action: "heal" })
    for (const peer of blocked) await this.fault(c, { action: "block", peer })
    for (const [peer, ms] of delayed) await this.fault(c, { action: "delay", peer, ms })
    if (disk > 0) await this.fault(c, { action: "diskDelay", ms: disk })
    this.log(`re-applied faults on ${c.node.name}: blocks ${[...blocked].map((p) => this.name(p)).join(",") || "-"}${delayed.size ? `, delays ${[...delayed].map(([p, ms]) => `${this.name(p)}:${ms}ms`).join(",")}` : ""}`)
  }

  /**
   * Heals everything: SIGCONT the paused, restart the dead, remove every block and delay, and
   * checks that every node reports no fault. Throws if the cluster cannot be brought back.
   */
  async healAll(): Promise<void> {
    this.log("heal: resume, restart, remove every fault")
    for (const c of this.all) if (c.paused) await this.resume(c)
    this.blocks.clear()
    this.delays.clear()
    this.diskDelays.clear()
    await Promise.all(this.all.filter((c) => c.down || c.starting).map((c) => this.restart(c)))
    const dead = this.all.filter((c) => c.down)
    if (dead.length > 0) throw new Error(`could not restart ${dead.map((c) => c.node.name).join(", ")}`)
    // Without fault injection (process faults only, the transport's production path) there is
    // nothing else to remove.
    if (this.options.cnf?.raft_fault_injection === "false") return
    for (const c of this.all) {
      let healed = false
      for (let attempt = 0; attempt < 20 && !healed; attempt++) {
        const r = await this.fault(c, { action: "heal" }, 3000)
        const f = r?.json?.faults
        healed = r?.httpStatus === 200 && f?.blockedAll === false && f?.blocked?.length === 0 && Object.keys(f?.delaysMs ?? {}).length === 0 && (f?.diskDelayMs ?? 0) === 0
        if (!healed) await sleep(200)
      }
      if (!healed) throw new Error(`${c.node.name} did not confirm heal`)
    }
    this.log("healed: every node up, no fault left")
  }

  // --------------------------------------------------------------------------------- monitor

  /** Samples GET /status of every running node every `intervalMs`. */
  startMonitor(intervalMs = 250): void {
    this.monitorStop = false
    this.monitorDone = (async () => {
      while (!this.monitorStop) {
        await Promise.all(
          this.all
            .filter((c) => !c.down && !c.paused && c.starting === undefined)
            .map(async (c) => {
              try {
                const s = await status(c.node.http, Math.min(800, intervalMs * 3))
                this.samples.push(sampleOf(this.now(), s))
              } catch {
                // down or slow: no sample
              }
            })
        )
        await sleep(intervalMs)
      }
    })()
  }

  async stopMonitor(): Promise<void> {
    this.monitorStop = true
    await this.monitorDone
  }

  /** The leader the freshest samples agree on (highest term), if any. */
  currentLeader(maxAgeMs = 1500): ChaosNode | undefined {
    const now = this.now()
    let best: StatusSample | undefined
    for (let i = this.samples.length - 1; i >= 0; i--) {
      const s = this.samples[i]
      if (now - s.t > maxAgeMs) break
      if (s.role === "leader" && (best === undefined || s.term > best.term)) best = s
    }
    const c = best === undefined ? undefined : this.byRaft(best.node)
    return c !== undefined && !c.down && !c.paused ? c : undefined
  }

  /** The voters in the freshest sample. */
  currentVoters(): ReadonlyArray<string> {
    for (let i = this.samples.length - 1; i >= 0; i--) {
      if (this.samples[i].role === "leader") return this.samples[i].voters
    }
    return this.members.map((c) => c.node.raft)
  }

  /** Status of every node (throws if one does not answer). */
  statuses(timeoutMs = 2000): Promise<Array<NodeStatus>> {
    return Promise.all(this.all.map((c) => status(c.node.http, timeoutMs)))
  }

  // ---------------------------------------------------------------------------------- cleanup

  /** Kills every process by pid (SIGSTOPped ones too) and removes the temp dirs. Idempotent. */
  async cleanup(keepDirs = false): Promise<void> {
    if (this.cleaned) return
    this.cleaned = true
    this.monitorStop = true
    for (const c of this.all) this.expectedExits.add(c.node.pid)
    if (keepDirs) {
      for (const c of this.all) if (c.node.alive) this.h.kill9(c.node)
      await Promise.all(this.all.map((c) => c.node.waitExit(5000)))
      return
    }
    await this.h.cleanup()
  }

  /** Stops every node with kill -9 (data dirs stay, for the checkers). */
  async stopAll(): Promise<void> {
    for (const c of this.all) this.expectedExits.add(c.node.pid)
    for (const c of this.all) if (c.paused) this.h.sigcont(c.node)
    await Promise.all(this.all.map((c) => (c.node.alive ? this.h.kill9AndWait(c.node) : Promise.resolve())))
    for (const c of this.all) c.down = true
    this.log("stopped every node (kill -9) for the data-dir checks")
  }

  logText(c: ChaosNode): string {
    try {
      return fs.readFileSync(c.node.spec.logFile, "utf8")
    } catch {
      return ""
    }
  }

  static linkKey = linkKey
}

const sampleOf = (t: number, s: NodeStatus): StatusSample => ({
  t,
  node: s.node,
  role: s.role,
  term: s.term,
  leader: s.leader,
  commit: s.commit_index,
  applied: s.applied_index,
  voters: s.voters
})
