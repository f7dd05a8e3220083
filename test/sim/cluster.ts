/**
 * The simulation harness: N RaftCores on a simulated network, with simulated disks, clients and
 * operators, driven one tick at a time in plain TypeScript. Each node's Ready is carried out
 * exactly as src/domain/raft/ready.ts documents, and the invariants are checked after every
 * Ready (a "step"). Crashes may strike between the steps of a Ready, losing what was not yet
 * persisted or sent, never what was persisted.
 */
import { bootstrapPersisted, RaftCore } from "../../src/domain/raft/core.js"
import type { Message } from "../../src/domain/raft/messages.js"
import { defaultRaftOptions, type RaftOptions } from "../../src/domain/raft/options.js"
import type { Notice, Persisted, ProposeResult, RaftStatus, Ready, Refusal } from "../../src/domain/raft/ready.js"
import type { Configuration, Entry } from "../../src/domain/raft/types.js"
import { StorageInvariantViolation } from "../../src/storage/PersistenceError.js"
import { openRaftStorage, type RaftStorage } from "../../src/storage/RaftStorage.js"
import { SafetyChecker, SimFailure, type Where } from "./invariants.js"
import { LogModel } from "./logModel.js"
import { Network, type NetworkFaults, reliableNetwork } from "./network.js"
import { Prng } from "./prng.js"
import { StateMachine } from "./stateMachine.js"
import { Trace } from "./trace.js"

export const simGroup = "sim"

/** Tunables the harness lets a run override (identity and seed are the harness's). */
export type RaftTunables = Partial<Omit<RaftOptions, "group" | "id" | "seed">>

/** Small snapshots, often, in small chunks, so that InstallSnapshot runs all the time. */
export const simRaftTunables: RaftTunables = {
  electionTicks: 10,
  heartbeatTicks: 1,
  snapshotEntries: 50,
  logRetainEntries: 10,
  snapshotChunkBytes: 64
}

export interface ClusterConfig {
  readonly seed: number
  /** Initial voters, named n1..nN. */
  readonly voters: number
  readonly raft?: RaftTunables
  readonly network?: NetworkFaults
  /** "sqlite": every node persists to its own in-memory SQLite database through RaftStorage. */
  readonly storage?: "sqlite" | "memory"
  /** Chance per node and tick that its clock misses the tick (clocks drift apart). */
  readonly clockSkewRate?: number
  /** Events kept for failure reports. */
  readonly traceLimit?: number
  readonly traceSink?: (line: string) => void
}

/**
 * Where a crash strikes in the node's next Ready: before the disk write (the Ready's sends
 * went out, its writes are lost), after the write but before the replies that depend on it,
 * or after applying. "now" crashes between two Readies.
 */
export type CrashPoint = "now" | "beforePersist" | "afterPersist" | "afterApply"

export type ProposalState = "pending" | "acked" | "lost" | "unknown"

export interface Proposal {
  readonly data: string
  readonly node: string
  readonly index: number
  readonly term: number
  readonly tick: number
  state: ProposalState
  ackTick: number
}

interface PendingRead {
  readonly id: string
  readonly node: string
  /** The highest index a client saw acknowledged before the read started. */
  readonly floor: number
}

export interface NoticeRecord {
  readonly tick: number
  readonly node: string
  readonly notice: Notice
}

export interface ClusterStats {
  elections: number
  proposals: number
  acked: number
  lost: number
  unknown: number
  snapshotsTaken: number
  snapshotsInstalled: number
  crashes: number
  restarts: number
  confChanges: number
  confChangesDone: number
  confChangesFailed: number
  transfers: number
  transfersDone: number
  transfersFailed: number
  reads: number
  readsDone: number
  readsFailed: number
}

const emptyStats = (): ClusterStats => ({
  elections: 0,
  proposals: 0,
  acked: 0,
  lost: 0,
  unknown: 0,
  snapshotsTaken: 0,
  snapshotsInstalled: 0,
  crashes: 0,
  restarts: 0,
  confChanges: 0,
  confChangesDone: 0,
  confChangesFailed: 0,
  transfers: 0,
  transfersDone: 0,
  transfersFailed: 0,
  reads: 0,
  readsDone: 0,
  readsFailed: 0
})

export class SimNode {
  core: RaftCore | undefined = undefined
  sm: StateMachine = StateMachine.empty()
  incarnation = 0
  /** Retired nodes are stopped for good (removed from the group and shut down). */
  retired = false
  crashPoint: CrashPoint | undefined = undefined
  /** In-memory commit index of the current incarnation. */
  commit = 0
  /** The term this node was last seen leading, to notice a new election. */
  leaderTerm = -1
  readonly pending = new Map<number, Proposal>()
  /** Ticks the core promised would do nothing (RaftCore.ticksUntilDue, less the acting one). */
  quietTicks = 0

  constructor(
    readonly id: string,
    readonly model: LogModel,
    readonly store: RaftStorage | undefined
  ) {}

  get up(): boolean {
    return this.core !== undefined
  }
}

export class Cluster {
  readonly seed: number
  now = 0
  steps = 0
  readonly network: Network
  readonly nodes = new Map<string, SimNode>()
  readonly checker: SafetyChecker
  readonly trace: Trace
  readonly notices: Array<NoticeRecord> = []
  readonly proposals = new Map<string, Proposal>()
  readonly stats: ClusterStats = emptyStats()
  /** The highest index of a proposal some client saw acknowledged. */
  maxAckedIndex = 0
  /** The newest configuration applied anywhere (so committed), and its index. */
  config: Configuration
  configIndex = 0
  /** Every configuration applied, in log order. */
  readonly configHistory: Array<Configuration> = []
  private readonly root: Prng
  private readonly sched: Prng
  private readonly raft: RaftTunables
  private readonly reads = new Map<string, PendingRead>()
  private readonly storageKind: "sqlite" | "memory"
  private readonly clockSkewRate: number
  private nodeCount = 0
  private opCount = 0
  private readonly where = (): Where => ({ seed: this.seed, tick: this.now, step: this.steps })

  constructor(cfg: ClusterConfig) {
    this.seed = cfg.seed
    this.root = new Prng(cfg.seed)
    this.sched = this.root.derive("schedule")
    this.network = new Network(this.root.derive("network"), cfg.network ?? reliableNetwork)
    this.raft = { ...simRaftTunables, ...cfg.raft }
    this.storageKind = cfg.storage ?? "memory"
    this.clockSkewRate = cfg.clockSkewRate ?? 0
    this.checker = new SafetyChecker(this.where)
    this.trace = new Trace(cfg.traceLimit ?? 400, cfg.traceSink)
    const ids = Array.from({ length: cfg.voters }, () => this.newId())
    this.config = { voters: ids, outgoing: [], learners: [] }
    for (const id of ids) this.startNew(id, this.config)
  }

  // ------------------------------------------------------------------ membership of the sim

  private newId(): string {
    this.nodeCount++
    return `n${this.nodeCount}`
  }

  ids(): Array<string> {
    return [...this.nodes.keys()]
  }

  node(id: string): SimNode {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`no node ${id}`)
    return n
  }

  upNodes(): Array<SimNode> {
    return [...this.nodes.values()].filter((n) => n.up)
  }

  optionsFor(n: SimNode): RaftOptions {
    const seed = this.root.deriveSeed(`core:${n.id}:${n.incarnation}`)
    return { ...defaultRaftOptions(simGroup, n.id, seed), ...this.raft }
  }

  private startNew(id: string, config: Configuration): SimNode {
    const persisted = bootstrapPersisted(config)
    const store = this.storageKind === "sqlite" ? openRaftStorage(":memory:", { identity: { group: simGroup, node: id } }) : undefined
    store?.bootstrap(persisted)
    const n = new SimNode(id, new LogModel(persisted), store)
    this.nodes.set(id, n)
    this.boot(n, persisted)
    return n
  }

  /**
   * A brand-new empty node that knows every candidate member, itself included: it must be able
   * to join through a membership change without disturbing the group before that.
   */
  addSpare(): string {
    const id = this.newId()
    const everyone = [...this.ids().filter((x) => !this.node(x).retired), id]
    this.note(`spare ${id} starts knowing [${everyone.join(",")}]`)
    this.guard(() => this.startNew(id, { voters: everyone, outgoing: [], learners: [] }))
    return id
  }

  // ------------------------------------------------------------------ crash and restart

  /** Crashes `id` at `point` of its next Ready ("now": at once). */
  crash(id: string, point: CrashPoint = "now"): void {
    const n = this.node(id)
    if (!n.up) return
    if (point === "now") this.crashNow(n)
    else n.crashPoint = point
  }

  private crashNow(n: SimNode): void {
    const point = n.crashPoint ?? "now"
    n.core = undefined
    n.crashPoint = undefined
    n.sm = StateMachine.empty()
    n.incarnation++
    n.leaderTerm = -1
    for (const p of n.pending.values()) {
      p.state = "unknown"
      this.stats.unknown++
    }
    n.pending.clear()
    for (const [id, r] of this.reads) if (r.node === n.id) this.reads.delete(id)
    this.stats.crashes++
    this.note(`crash ${n.id} (${point})`)
    // A dead process's connections close at once: peers hear of it, as over TCP (fast failover).
    for (const o of this.nodes.values()) {
      if (o === n || o.core === undefined) continue
      o.core.peerUnreachable(n.id)
      o.quietTicks = o.core.ticksUntilDue() - 1
    }
  }

  restart(id: string): void {
    const n = this.node(id)
    if (n.up || n.retired) return
    this.guard(() => this.boot(n, this.loadDurable(n)))
    this.stats.restarts++
  }

  /** Stops `id` for good (after it left the group). */
  retire(id: string): void {
    const n = this.node(id)
    if (n.up) this.crashNow(n)
    n.retired = true
    n.store?.close()
    this.note(`retire ${id}`)
  }

  /** What survived on disk; the SQLite store must agree with the model of what was written. */
  private loadDurable(n: SimNode): Persisted {
    const modelled = n.model.load()
    if (n.store === undefined) return modelled
    const stored = n.store.load()
    if (stored === undefined) return this.checker.fail("durability", `${n.id}'s store lost its bootstrap`)
    if (JSON.stringify(stored) !== JSON.stringify(modelled)) {
      this.checker.fail("durability", `${n.id}'s SQLite store loads a different state than was persisted`)
    }
    return stored
  }

  private boot(n: SimNode, persisted: Persisted): void {
    const snap = persisted.snapshot!
    n.core = new RaftCore(this.optionsFor(n), persisted, snap.meta.index)
    n.sm = StateMachine.restore(snap.meta.index, snap.data)
    this.checker.snapshotLoaded(n.id, snap.meta.index, snap.meta.term, n.sm.digest)
    n.commit = n.core.status().commitIndex
    this.note(`start ${n.id} #${n.incarnation} term=${persisted.hardState.term} snap=${snap.meta.index} last=${n.model.lastIndex()}`)
    this.drain(n)
  }

  // ------------------------------------------------------------------ time

  tick(count = 1): void {
    for (let i = 0; i < count; i++) this.guard(() => this.tickOnce())
  }

  private tickOnce(): void {
    this.now++
    for (const p of this.network.expire(this.now)) this.note(`heal ${p.label}`)
    for (const m of this.network.deliverable(this.now)) {
      const n = this.nodes.get(m.to)
      if (n?.core === undefined) continue
      this.trace.delivered(this.now, this.steps, m)
      n.core.receive(m)
      this.drain(n)
    }
    for (const n of this.sched.shuffle([...this.nodes.values()])) {
      if (n.core === undefined || this.sched.chance(this.clockSkewRate)) continue
      const promised = n.quietTicks
      const before = promised > 0 ? outwardState(n.core) : undefined
      n.core.tick()
      if (before !== undefined && outwardState(n.core) !== before) {
        this.checker.fail("ticks-until-due", `${n.id} acted on a tick it promised would do nothing (${promised} more were promised)`)
      }
      this.drain(n)
      // A driver sleeps on the promise made after the last input: it still holds, less this tick.
      if (promised > 0) n.quietTicks = Math.max(n.quietTicks, promised - 1)
    }
    for (const n of this.nodes.values()) if (n.crashPoint !== undefined) this.crashNow(n)
  }

  /** Ticks until `done()` holds; a liveness failure named `what` after `maxTicks`. */
  runUntil(done: () => boolean, maxTicks: number, what: string): number {
    const start = this.now
    while (!done()) {
      if (this.now - start >= maxTicks) this.livenessFailure(what, `not within ${maxTicks} ticks`)
      this.tick()
    }
    return this.now - start
  }

  livenessFailure(invariant: string, detail: string): never {
    const states = this.upNodes()
      .map((n) => {
        const s = n.core!.status()
        return `${n.id}:${s.role}/t${s.term}/c${s.commitIndex}/l${s.lastIndex}/leader=${s.leader}`
      })
      .join(" ")
    const l = this.leader()?.core?.status()
    const progress =
      l === undefined
        ? ""
        : ` ${l.id} voters=[${l.voters.join(",")}]${l.outgoing.length > 0 ? `+[${l.outgoing.join(",")}]` : ""} progress: ${l.peers
            .map((p) => `${p.peer}:${p.state}/m${p.matchIndex}/n${p.nextIndex}/seen${p.ticksSinceContact}`)
            .join(" ")}`
    throw new SimFailure("liveness", invariant, this.where(), `${detail} [${states}]${progress}`)
  }

  /** Runs `f`; exceptions that are not simulator failures are crashes, with the seed. */
  guard<A>(f: () => A): A {
    try {
      return f()
    } catch (error) {
      if (error instanceof SimFailure) throw this.withTrace(error)
      if (error instanceof StorageInvariantViolation) {
        throw this.withTrace(new SimFailure("safety", "storage-contract", this.where(), error.message, { cause: error }))
      }
      const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
      throw this.withTrace(new SimFailure("crash", "exception", this.where(), detail, { cause: error }))
    }
  }

  private withTrace(e: SimFailure): SimFailure {
    if (e.recent.length === 0) e.recent = this.trace.recent()
    return e
  }

  // ------------------------------------------------------------------ the Ready loop

  private drain(n: SimNode): void {
    while (n.core !== undefined && n.core.hasReady()) {
      const rd = n.core.ready()
      this.steps++
      this.handleReady(n, n.core, rd)
    }
    if (n.core !== undefined) n.quietTicks = n.core.ticksUntilDue() - 1
  }

  private handleReady(n: SimNode, core: RaftCore, rd: Ready): void {
    const leading = this.observe(n, core)
    if (leading && rd.truncateFrom !== undefined) {
      this.checker.fail("leader-append-only", `leader ${n.id} truncates its log from ${rd.truncateFrom}`)
    }
    this.sendAll(n, rd.messages)
    if (n.crashPoint === "beforePersist") return this.crashNow(n)
    this.persist(n, rd)
    const last = rd.entries.length > 0 ? rd.entries[rd.entries.length - 1] : undefined
    if (last !== undefined) core.persisted(last.index, last.term)
    else if (rd.snapshot !== undefined) core.persisted(rd.snapshot.meta.index, rd.snapshot.meta.term)
    if (n.crashPoint === "afterPersist") return this.crashNow(n)
    this.sendAll(n, rd.messagesAfterPersist)
    if (rd.snapshotToApply !== undefined) this.loadSnapshot(n, rd.snapshotToApply.meta.index, rd.snapshotToApply.meta.term, rd.snapshotToApply.data)
    for (const e of rd.committed) this.apply(n, e)
    if (n.crashPoint === "afterApply") return this.crashNow(n)
    if (rd.snapshotDue !== undefined) {
      if (rd.snapshotDue !== n.sm.index) {
        this.checker.fail("ready-contract", `${n.id}: snapshotDue ${rd.snapshotDue} but applied ${n.sm.index}`)
      }
      core.snapshotTaken(rd.snapshotDue, n.sm.image())
      this.stats.snapshotsTaken++
    }
    for (const notice of rd.notices) this.onNotice(n, notice)
    this.checkContract(n, core)
  }

  private sendAll(n: SimNode, messages: ReadonlyArray<Message>): void {
    for (const m of messages) {
      this.checkDurableBeforeSend(n, m)
      this.network.send(m, this.now)
    }
  }

  /** A vote or an append acknowledgement promises state that must already be on disk. */
  private checkDurableBeforeSend(n: SimNode, m: Message): void {
    if (m._tag === "RequestVoteResp" && m.granted) {
      const hs = n.model.hardState
      if (hs.term !== m.term || hs.vote !== m.to) {
        this.checker.fail("durable-before-send", `${n.id} grants its term ${m.term} vote to ${m.to}; disk has term ${hs.term} vote ${hs.vote}`)
      }
      this.checker.voteGranted(n.id, m.term, m.to)
    } else if (m._tag === "AppendEntriesResp" && m.success && m.matchIndex > n.model.lastIndex()) {
      this.checker.fail("durable-before-send", `${n.id} acknowledges ${m.matchIndex}; disk holds up to ${n.model.lastIndex()}`)
    }
  }

  private persist(n: SimNode, rd: Ready): void {
    n.model.persist(rd)
    if (rd.entries.length > 0) this.checker.appended(n.id, n.model, rd.entries)
    if (rd.hardState !== undefined) this.checker.hardStatePersisted(n.id, rd.hardState)
    n.store?.persist(rd)
  }

  private loadSnapshot(n: SimNode, index: number, term: number, data: string): void {
    if (index <= n.sm.index) this.checker.fail("ready-contract", `${n.id} told to load snapshot ${index} at applied ${n.sm.index}`)
    n.sm = StateMachine.restore(index, data)
    this.checker.snapshotLoaded(n.id, index, term, n.sm.digest)
    this.stats.snapshotsInstalled++
    this.note(`${n.id} installs snapshot ${index}@${term}`)
    for (const [i, p] of n.pending) if (i <= index) this.settle(n, p, "unknown")
  }

  private apply(n: SimNode, e: Entry): void {
    if (e.index !== n.sm.index + 1) this.checker.fail("ready-contract", `${n.id} told to apply ${e.index} after ${n.sm.index}`)
    n.sm.apply(e)
    this.checker.applied(n.id, e, n.sm.digest)
    if (e.payload._tag === "Config" && e.index > this.configIndex) {
      this.config = e.payload.config
      this.configIndex = e.index
      this.configHistory.push(e.payload.config)
    }
    const p = n.pending.get(e.index)
    if (p === undefined) return
    const same = e.term === p.term && e.payload._tag === "Command" && e.payload.data === p.data
    this.settle(n, p, same ? "acked" : "lost")
  }

  private settle(n: SimNode, p: Proposal, state: ProposalState): void {
    n.pending.delete(p.index)
    p.state = state
    if (state === "acked") {
      p.ackTick = this.now
      this.stats.acked++
      if (p.index > this.maxAckedIndex) this.maxAckedIndex = p.index
    } else if (state === "lost") this.stats.lost++
    else this.stats.unknown++
  }

  /**
   * Role, term and commit as the node reports them, checked before the Ready's effects;
   * returns whether the node leads.
   */
  private observe(n: SimNode, core: RaftCore): boolean {
    const s = core.status()
    const leader = s.role === "leader"
    // A leader removed from the group steps down in the very step that commits its removal.
    const ledThisTerm = leader || n.leaderTerm === s.term
    if (leader) {
      this.checker.leaderSeen(n.id, s.term)
      if (n.leaderTerm !== s.term) {
        n.leaderTerm = s.term
        this.stats.elections++
        this.note(`${n.id} leads term ${s.term} (last=${n.model.lastIndex()} commit=${s.commitIndex})`)
        this.checker.becameLeader(n.id, s.term, n.model)
      }
    } else n.leaderTerm = -1
    if (s.commitIndex < n.commit) this.checker.fail("commit-monotonic", `${n.id} commit went from ${n.commit} to ${s.commitIndex}`)
    n.commit = s.commitIndex
    this.checker.commitSeen(n.id, ledThisTerm, s.term, s.commitIndex, n.model)
    return leader
  }

  /** After a Ready is carried out, the core's log and hard state are exactly what is on disk. */
  private checkContract(n: SimNode, core: RaftCore): void {
    const s = core.status()
    const hs = n.model.hardState
    if (s.lastIndex !== n.model.lastIndex() || s.term !== hs.term || s.vote !== hs.vote) {
      this.checker.fail(
        "ready-contract",
        `${n.id} runs with last=${s.lastIndex} term=${s.term} vote=${s.vote} but persisted last=${n.model.lastIndex()} term=${hs.term} vote=${hs.vote}`
      )
    }
    if (s.appliedIndex !== n.sm.index) {
      this.checker.fail("ready-contract", `${n.id} reports applied ${s.appliedIndex}, its state machine is at ${n.sm.index}`)
    }
    // The Emit hot path decides raft missions on this lighter view: it must never disagree.
    const m = core.membership()
    if (m.id !== s.id || m.role !== s.role || m.voters.join() !== s.voters.join() || m.outgoing.join() !== s.outgoing.join()) {
      this.checker.fail("ready-contract", `${n.id} membership() ${JSON.stringify(m)} disagrees with status()`)
    }
  }

  private onNotice(n: SimNode, notice: Notice): void {
    this.notices.push({ tick: this.now, node: n.id, notice })
    switch (notice._tag) {
      case "ReadReady": {
        const r = this.reads.get(notice.id)
        if (r === undefined) return
        this.reads.delete(notice.id)
        this.stats.readsDone++
        if (notice.index < r.floor) {
          this.checker.fail("read-index", `${n.id} answered read ${notice.id} with ${notice.index} < acknowledged ${r.floor}`)
        }
        return
      }
      case "ReadFailed":
        this.reads.delete(notice.id)
        this.stats.readsFailed++
        return
      case "ConfChangeDone":
        this.stats.confChangesDone++
        return this.note(`${n.id}: ${notice.id} done, voters [${notice.voters.join(",")}]`)
      case "ConfChangeFailed":
        this.stats.confChangesFailed++
        return this.note(`${n.id}: ${notice.id} failed: ${notice.reason}`)
      case "TransferDone":
        this.stats.transfersDone++
        return this.note(`${n.id}: ${notice.id} done, leader ${notice.leader}`)
      case "TransferFailed":
        this.stats.transfersFailed++
        return this.note(`${n.id}: ${notice.id} failed: ${notice.reason}`)
    }
  }

  note(text: string): void {
    this.trace.event(this.now, this.steps, text)
  }

  // ------------------------------------------------------------------ queries

  status(id: string): RaftStatus | undefined {
    return this.nodes.get(id)?.core?.status()
  }

  /** The up node that believes it leads the highest term, if any. */
  leader(): SimNode | undefined {
    let best: SimNode | undefined
    let bestTerm = -1
    for (const n of this.nodes.values()) {
      const s = n.core?.status()
      if (s?.role === "leader" && s.term > bestTerm) {
        best = n
        bestTerm = s.term
      }
    }
    return best
  }

  leaders(): Array<SimNode> {
    return this.upNodes().filter((n) => n.core!.status().role === "leader")
  }

  /** Every member of the newest applied configuration (voters of both halves, learners). */
  members(): Array<string> {
    const c = this.config
    return [...new Set([...c.voters, ...c.outgoing, ...c.learners])]
  }

  // ------------------------------------------------------------------ clients and operators

  private nextOp(prefix: string): string {
    this.opCount++
    return `${prefix}${this.opCount}`
  }

  /** A client sends `data` to `at` (default: the leader); the result is the core's answer. */
  propose(data: string, at?: string): ProposeResult | undefined {
    const n = at === undefined ? this.leader() : this.nodes.get(at)
    if (n?.core === undefined) return undefined
    return this.guard(() => {
      const res = n.core!.propose([data])
      this.stats.proposals++
      if (res._tag === "Accepted") {
        const p: Proposal = { data, node: n.id, index: res.firstIndex, term: res.term, tick: this.now, state: "pending", ackTick: -1 }
        this.proposals.set(data, p)
        n.pending.set(p.index, p)
      }
      this.drain(n)
      return res
    })
  }

  /** Asks `at` (default: the leader) to change the voters; returns the operation id. */
  changeMembership(voters: ReadonlyArray<string>, at?: string): { id: string; refusal: Refusal | undefined } {
    const id = this.nextOp("cc")
    const n = at === undefined ? this.leader() : this.nodes.get(at)
    if (n?.core === undefined) return { id, refusal: { _tag: "NotLeader", leader: null } }
    return this.guard(() => {
      const refusal = n.core!.changeMembership(id, voters)
      this.stats.confChanges++
      this.note(`${n.id}: ${id} voters -> [${voters.join(",")}]${refusal ? ` refused ${refusal._tag}` : ""}`)
      this.drain(n)
      return { id, refusal }
    })
  }

  transferLeadership(target: string, at?: string): { id: string; refusal: Refusal | undefined } {
    const id = this.nextOp("tr")
    const n = at === undefined ? this.leader() : this.nodes.get(at)
    if (n?.core === undefined) return { id, refusal: { _tag: "NotLeader", leader: null } }
    return this.guard(() => {
      const refusal = n.core!.transferLeadership(id, target)
      this.stats.transfers++
      this.note(`${n.id}: ${id} transfer to ${target}${refusal ? ` refused ${refusal._tag}` : ""}`)
      this.drain(n)
      return { id, refusal }
    })
  }

  readIndex(at?: string): { id: string; refusal: Refusal | undefined } {
    const id = this.nextOp("rd")
    const n = at === undefined ? this.leader() : this.nodes.get(at)
    if (n?.core === undefined) return { id, refusal: { _tag: "NotLeader", leader: null } }
    return this.guard(() => {
      this.reads.set(id, { id, node: n.id, floor: this.maxAckedIndex })
      const refusal = n.core!.readIndex(id)
      if (refusal !== undefined) this.reads.delete(id)
      else this.stats.reads++
      this.drain(n)
      return { id, refusal }
    })
  }

  notice(id: string): NoticeRecord | undefined {
    return this.notices.find((r) => "id" in r.notice && r.notice.id === id)
  }

  // ------------------------------------------------------------------ waiting and checking

  /** Waits for a leader that every up voter of its configuration follows, in its term. */
  awaitLeader(maxTicks = 200): SimNode {
    let found: SimNode | undefined
    this.runUntil(
      () => {
        found = this.stableLeader()
        return found !== undefined
      },
      maxTicks,
      "leader-elected"
    )
    return found!
  }

  /**
   * The leader, once it reaches a quorum of up voters and every up voter it reaches follows it
   * in its term.
   */
  stableLeader(): SimNode | undefined {
    const l = this.leader()
    if (l === undefined) return undefined
    const s = l.core!.status()
    const reached = (ids: ReadonlyArray<string>) =>
      ids.filter((v) => this.nodes.get(v)?.up === true && this.connected(l.id, v)).length
    const quorum = (ids: ReadonlyArray<string>) => ids.length === 0 || reached(ids) > ids.length / 2
    if (!quorum(s.voters) || !quorum(s.outgoing)) return undefined
    for (const v of new Set([...s.voters, ...s.outgoing])) {
      const vs = this.status(v)
      if (vs === undefined || !this.connected(l.id, v)) continue
      if (vs.term !== s.term || vs.leader !== l.id) return undefined
    }
    return l
  }

  /**
   * Proposes `data` at the leader until a client sees it acknowledged, retrying (under a new
   * name) at whoever leads when an attempt is lost or goes unanswered for `retryTicks` (its
   * node may have left the group); a liveness failure after `maxTicks`.
   */
  commit(data: string, maxTicks = 200, retryTicks = 40): Proposal {
    const start = this.now
    for (let attempt = 0; ; attempt++) {
      const name = attempt === 0 ? data : `${data}#${attempt}`
      const res = this.propose(name)
      if (res?._tag === "Accepted") {
        const p = this.proposals.get(name)!
        const since = this.now
        while (p.state === "pending" && this.now - since < retryTicks && this.now - start < maxTicks) this.tick()
        if (p.state === "acked") return p
      } else this.tick()
      if (this.now - start >= maxTicks) this.livenessFailure("commit", `${data} not committed within ${maxTicks} ticks`)
    }
  }

  /** Waits until every up voter the leader reaches applied all of the leader's log. */
  awaitApplied(maxTicks = 200): void {
    this.runUntil(() => this.converged(), maxTicks, "replicas-converge")
  }

  /** Whether packets flow both ways between `a` and `b` (partitions only; loss aside). */
  connected(a: string, b: string): boolean {
    return a === b || (!this.network.isCut(a, b) && !this.network.isCut(b, a))
  }

  converged(): boolean {
    const l = this.stableLeader()
    if (l === undefined) return false
    const s = l.core!.status()
    if (s.commitIndex < s.lastIndex) return false
    for (const v of s.voters) {
      const n = this.nodes.get(v)
      if (n?.core === undefined || !this.connected(l.id, v)) continue
      if (n.sm.index < s.lastIndex) return false
    }
    return true
  }

  /** Every proposal a client saw acknowledged is in the committed log at its index. */
  checkAcknowledged(): void {
    for (const p of this.proposals.values()) {
      if (p.state !== "acked") continue
      if (this.checker.committedAt(p.index) !== `C:${p.data}`) {
        this.checker.fail("acknowledged-durable", `${p.data} acknowledged at ${p.index}, committed log has ${this.checker.committedAt(p.index)}`)
      }
    }
  }

  /** Commands in the committed log, by index, as far as it is known. */
  committedCommands(): Array<string> {
    const out: Array<string> = []
    for (let i = 1; i <= this.checker.maxCommitted; i++) {
      const k = this.checker.committedAt(i)
      if (k !== undefined && k.startsWith("C:")) out.push(k.slice(2))
    }
    return out
  }

  close(): void {
    for (const n of this.nodes.values()) n.store?.close()
  }
}

/** What a tick could change that anyone outside the core would see, besides a Ready. */
const outwardState = (core: RaftCore): string => {
  const s = core.status()
  return `${s.role} ${s.term} ${s.leader} ${s.commitIndex} ${core.hasReady()}`
}
