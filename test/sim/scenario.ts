/**
 * One simulated run, fully drawn from its seed: cluster size, fault rates and duration first
 * (printed before anything runs), then a schedule of partitions, clogged links, crashes at any
 * point of a Ready, client proposals and reads, membership changes and leadership transfers.
 * After the fault phase everything heals and the cluster must recover within a bound.
 */
import { Cluster, type CrashPoint, type RaftTunables } from "./cluster.js"
import { SimFailure } from "./invariants.js"
import type { NetworkFaults, Partition } from "./network.js"
import { Prng } from "./prng.js"

export interface ScenarioOptions {
  readonly seed: number
  readonly voters: number
  readonly ticks: number
  readonly network: NetworkFaults
  /** Chance per tick that a partition starts (at most two at once), and how long it lasts. */
  readonly partitionRate: number
  readonly partitionTicksMax: number
  readonly clogRate: number
  /** Chance per tick that a node crashes, and how long it stays down at most. */
  readonly crashRate: number
  readonly downTicksMax: number
  /** Chance per tick that a majority (sometimes everyone) crashes at once. */
  readonly massCrashRate: number
  readonly clockSkewRate: number
  readonly proposeRate: number
  readonly readRate: number
  readonly confChangeRate: number
  readonly transferRate: number
  /** After healing, the ticks within which a leader must serve a new proposal everywhere. */
  readonly recoveryTicks: number
  readonly storage: "sqlite" | "memory"
  readonly raft: RaftTunables
}

export interface RunOverrides {
  readonly ticks?: number
  readonly storage?: "sqlite" | "memory"
  readonly voters?: number
}

/** Draws a run's options from its seed alone (own stream: later draws do not shift them). */
export const drawOptions = (seed: number, overrides: RunOverrides = {}): ScenarioOptions => {
  const r = new Prng(seed).derive("options")
  const calm = r.chance(0.1)
  const rate = (max: number) => (calm ? 0 : r.between(0, max))
  const delayMaxTicks = r.range(1, 6)
  const o: ScenarioOptions = {
    seed,
    voters: overrides.voters ?? r.pick([3, 5, 7]),
    ticks: overrides.ticks ?? r.range(1500, 3000),
    network: {
      dropRate: rate(0.15),
      duplicateRate: rate(0.05),
      delayMinTicks: 1,
      delayMaxTicks,
      longDelayRate: rate(0.02),
      longDelayMaxTicks: r.range(delayMaxTicks, 60),
      linkCapacityMax: r.range(64, 512)
    },
    partitionRate: rate(0.02),
    partitionTicksMax: r.range(10, 200),
    clogRate: rate(0.005),
    crashRate: rate(0.004),
    downTicksMax: r.range(5, 200),
    massCrashRate: rate(0.0005),
    clockSkewRate: rate(0.05),
    proposeRate: r.between(0.1, 1),
    readRate: r.between(0, 0.1),
    confChangeRate: rate(0.008),
    transferRate: rate(0.006),
    recoveryTicks: 200,
    storage: overrides.storage ?? "sqlite",
    raft: drawTunables(r)
  }
  // Leader leases assume bounded clock drift: clocks keep time when lease reads are on.
  return o.raft.leaseRead === true ? { ...o, clockSkewRate: 0 } : o
}

/**
 * Raft tunables around the simulator's defaults (frequent small snapshots in small chunks):
 * batching and windows from one at a time to wide, PreVote and CheckQuorum mostly on, and
 * lease reads sometimes (only with CheckQuorum and no clock drift, which leases assume), and
 * election jitter from Raft's classic full range down to two ticks.
 */
const drawTunables = (r: Prng): RaftTunables => {
  const checkQuorum = r.chance(0.85)
  const maxInflightAppends = r.pick([1, 4, 64])
  // At least 16 entries per round trip, so a backlog drains within the recovery bound (8 were
  // too few for ~150 entries behind at 6-tick delays and 14% loss: seed 5277).
  const maxEntriesPerAppend = Math.max(r.pick([1, 8, 512]), Math.ceil(16 / maxInflightAppends))
  return {
    preVote: r.chance(0.85),
    checkQuorum,
    leaseRead: checkQuorum && r.chance(0.3),
    snapshotEntries: r.pick([20, 50, 100]),
    logRetainEntries: r.pick([0, 10, 30]),
    snapshotChunkBytes: r.pick([32, 64, 128]),
    maxInflightSnapshotChunks: r.pick([1, 2, 8]),
    maxInflightAppends,
    maxEntriesPerAppend,
    // Classic [T, 2T) or the narrow range the nodes use (a few ticks: more split votes).
    electionJitterTicks: r.pick([10, 3, 2])
  }
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`

export const describeOptions = (o: ScenarioOptions): string =>
  [
    `seed=${o.seed}`,
    `voters=${o.voters}`,
    `ticks=${o.ticks}`,
    `storage=${o.storage}`,
    `drop=${pct(o.network.dropRate)}`,
    `dup=${pct(o.network.duplicateRate)}`,
    `delay=${o.network.delayMinTicks}..${o.network.delayMaxTicks}`,
    `long=${pct(o.network.longDelayRate)}/${o.network.longDelayMaxTicks}`,
    `cap=${o.network.linkCapacityMax}`,
    `partition=${pct(o.partitionRate)}/${o.partitionTicksMax}`,
    `clog=${pct(o.clogRate)}`,
    `crash=${pct(o.crashRate)}/${o.downTicksMax}`,
    `mass=${pct(o.massCrashRate)}`,
    `skew=${pct(o.clockSkewRate)}`,
    `propose=${pct(o.proposeRate)}`,
    `read=${pct(o.readRate)}`,
    `conf=${pct(o.confChangeRate)}`,
    `transfer=${pct(o.transferRate)}`,
    `raft=${Object.entries(o.raft)
      .map(([k, v]) => `${k}:${v}`)
      .join(",")}`
  ].join(" ")

export interface RunSummary {
  readonly seed: number
  readonly options: ScenarioOptions
  readonly ticks: number
  readonly steps: number
  readonly elections: number
  readonly proposals: number
  readonly commits: number
  readonly lost: number
  readonly snapshotsTaken: number
  readonly snapshotsInstalled: number
  readonly crashes: number
  readonly partitions: number
  readonly confChanges: string
  readonly transfers: string
  readonly reads: string
  readonly messages: string
  readonly finalVoters: ReadonlyArray<string>
  readonly recoveryTicks: number
  readonly trace: string
}

export const describeSummary = (s: RunSummary): string =>
  `seed=${s.seed} ok ticks=${s.ticks} steps=${s.steps} elections=${s.elections} proposals=${s.proposals} ` +
  `commits=${s.commits} lost=${s.lost} snapshots=${s.snapshotsTaken}/${s.snapshotsInstalled} installed ` +
  `crashes=${s.crashes} partitions=${s.partitions} confChanges=${s.confChanges} transfers=${s.transfers} ` +
  `reads=${s.reads} messages=${s.messages} voters=[${s.finalVoters.join(",")}] recovery=${s.recoveryTicks} trace=${s.trace}`

export interface RunHooks {
  /** Gets the drawn options line before the run starts. */
  readonly log?: (line: string) => void
  readonly traceSink?: (line: string) => void
  readonly traceLimit?: number
}

/** Runs the seed's scenario; throws a SimFailure naming the seed, step and invariant. */
export const runSeed = (seed: number, overrides: RunOverrides = {}, hooks: RunHooks = {}): RunSummary => {
  const o = drawOptions(seed, overrides)
  hooks.log?.(describeOptions(o))
  return runScenario(o, hooks)
}

export const runScenario = (o: ScenarioOptions, hooks: RunHooks = {}): RunSummary => {
  const cluster = new Cluster({
    seed: o.seed,
    voters: o.voters,
    raft: o.raft,
    network: o.network,
    storage: o.storage,
    clockSkewRate: o.clockSkewRate,
    traceLimit: hooks.traceLimit ?? 300,
    traceSink: hooks.traceSink
  })
  try {
    const world = new Schedule(cluster, o)
    for (let t = 0; t < o.ticks; t++) {
      world.step()
      cluster.tick()
    }
    const recovery = world.recover()
    return summarize(cluster, o, world.partitions, recovery)
  } catch (error) {
    throw error instanceof SimFailure ? error : cluster.guard(() => {
      throw error
    })
  } finally {
    cluster.close()
  }
}

const summarize = (c: Cluster, o: ScenarioOptions, partitions: number, recovery: number): RunSummary => {
  const s = c.stats
  const net = c.network.stats
  return {
    seed: o.seed,
    options: o,
    ticks: c.now,
    steps: c.steps,
    elections: c.checker.leaders.size,
    proposals: s.proposals,
    commits: s.acked,
    lost: s.lost,
    snapshotsTaken: s.snapshotsTaken,
    snapshotsInstalled: s.snapshotsInstalled,
    crashes: s.crashes,
    partitions,
    confChanges: `${s.confChangesDone}/${s.confChanges}`,
    transfers: `${s.transfersDone}/${s.transfers}`,
    reads: `${s.readsDone}/${s.reads}`,
    messages: `${net.sent}-${net.dropped + net.cut + net.overflowed}+${net.duplicated}`,
    finalVoters: c.config.voters,
    recoveryTicks: recovery,
    trace: c.trace.digest()
  }
}

const crashPoints: ReadonlyArray<CrashPoint> = ["now", "beforePersist", "afterPersist", "afterApply"]

/** The fault, client and operator schedule of one run, drawn tick by tick. */
class Schedule {
  private readonly faults: Prng
  private readonly clients: Prng
  private readonly operators: Prng
  private readonly restarts = new Map<string, number>()
  private readonly retirements = new Map<string, number>()
  private readonly everMember = new Set<string>()
  private readonly removedSeen = new Set<string>()
  private commandCount = 0
  partitions = 0

  constructor(
    private readonly c: Cluster,
    private readonly o: ScenarioOptions
  ) {
    const root = new Prng(o.seed)
    this.faults = root.derive("faults")
    this.clients = root.derive("clients")
    this.operators = root.derive("operators")
  }

  step(): void {
    this.networkFaults()
    this.crashes()
    this.clientRequests()
    this.operatorRequests()
    this.retireRemoved()
  }

  /** Heals everything, restarts every node and demands recovery within the bound. */
  recover(): number {
    const c = this.c
    c.note("heal all")
    c.network.heal()
    for (const n of c.nodes.values()) if (!n.up && !n.retired) c.restart(n.id)
    const start = c.now
    const bound = this.o.recoveryTicks
    c.awaitLeader(bound)
    // What the leader holds commits everywhere without any new proposal to push it along...
    c.awaitApplied(bound - (c.now - start))
    // ...and a client's new command is served.
    c.commit("recovery-probe", bound - (c.now - start))
    c.awaitApplied(bound - (c.now - start))
    this.checkClientsAnswered()
    c.checkAcknowledged()
    return c.now - start
  }

  /** Proposals still pending at a node that applied past them were never answered: a bug. */
  private checkClientsAnswered(): void {
    for (const n of this.c.upNodes()) {
      for (const p of n.pending.values()) {
        if (p.index <= n.sm.index) {
          this.c.checker.fail("client-answered", `${p.data} at ${n.id} index ${p.index} still pending at applied ${n.sm.index}`)
        }
      }
    }
  }

  private networkFaults(): void {
    const c = this.c
    const r = this.faults
    if (c.network.activePartitions().length < 2 && r.chance(this.o.partitionRate)) {
      const p = this.drawPartition()
      c.network.partition(p)
      this.partitions++
      c.note(`partition ${p.label} until ${p.untilTick}`)
    }
    if (r.chance(this.o.partitionRate / 2)) {
      // A partial partition: two nodes lose each other while both still reach the rest.
      const [a, b] = r.shuffle(c.ids().filter((id) => !c.node(id).retired))
      const until = c.now + r.range(5, this.o.partitionTicksMax)
      if (b !== undefined) {
        c.network.cut(a, b, until)
        this.partitions++
        c.note(`cut ${a}-${b} until ${until}`)
      }
    }
    if (r.chance(this.o.clogRate)) {
      const ids = c.ids()
      const from = r.pick(ids)
      const to = r.pick(ids)
      const until = c.now + r.range(5, 60)
      if (from !== to) {
        c.network.clog(from, to, until)
        c.note(`clog ${from}>${to} until ${until}`)
      }
    }
  }

  private drawPartition(): Partition {
    const c = this.c
    const r = this.faults
    const live = c.ids().filter((id) => !c.node(id).retired)
    const members = c.members().filter((id) => live.includes(id))
    const untilTick = c.now + r.range(5, this.o.partitionTicksMax)
    const subset = (size: number, from: ReadonlyArray<string>) => r.shuffle(from).slice(0, size)
    const kind = r.int(6)
    const leader = c.leader()?.id
    if (kind === 0 && leader !== undefined) {
      return { side: new Set([leader]), direction: "both", untilTick, label: `isolate leader ${leader}` }
    }
    if (kind <= 1) {
      const id = r.pick(live)
      return { side: new Set([id]), direction: "both", untilTick, label: `isolate ${id}` }
    }
    if (kind === 2 && members.length >= 2) {
      const side = subset(r.range(1, Math.floor(members.length / 2)), members)
      return { side: new Set(side), direction: "both", untilTick, label: `minority [${side.join(",")}]` }
    }
    const side = subset(r.range(1, Math.max(1, live.length - 1)), live)
    const direction = kind === 3 ? "out" : kind === 4 ? "in" : "both"
    return { side: new Set(side), direction, untilTick, label: `${direction} [${side.join(",")}]` }
  }

  private crashes(): void {
    const c = this.c
    const r = this.faults
    for (const [id, at] of this.restarts) {
      if (at > c.now) continue
      this.restarts.delete(id)
      c.restart(id)
    }
    const up = c.upNodes()
    if (up.length > 0 && r.chance(this.o.crashRate)) this.crash(r.pick(up).id)
    if (r.chance(this.o.massCrashRate)) {
      const everyone = r.chance(0.3)
      const count = everyone ? up.length : Math.floor(up.length / 2) + 1
      c.note(`mass crash of ${count}`)
      for (const n of r.shuffle(up).slice(0, count)) this.crash(n.id)
    }
  }

  private crash(id: string): void {
    const r = this.faults
    this.c.crash(id, r.pick(crashPoints))
    this.restarts.set(id, this.c.now + r.range(1, this.o.downTicksMax))
  }

  private clientRequests(): void {
    const c = this.c
    const r = this.clients
    if (r.chance(this.o.proposeRate)) {
      // A client talks to any node that believes it leads (there may be a stale one).
      const leaders = c.leaders()
      if (leaders.length > 0) {
        this.commandCount++
        c.propose(`s${this.o.seed}c${this.commandCount}`, r.pick(leaders).id)
      }
    }
    if (r.chance(this.o.readRate)) {
      const leaders = c.leaders()
      if (leaders.length > 0) c.readIndex(r.pick(leaders).id)
    }
  }

  private operatorRequests(): void {
    const c = this.c
    const r = this.operators
    const leader = c.leader()
    if (leader === undefined) return
    if (r.chance(this.o.transferRate)) {
      const voters = leader.core!.status().voters
      c.transferLeadership(r.pick(voters), leader.id)
    }
    if (r.chance(this.o.confChangeRate)) this.changeMembership(leader.id)
  }

  /** Adds, removes or replaces voters (several at once sometimes), between 3 and 7 of them. */
  private changeMembership(leader: string): void {
    const c = this.c
    const r = this.operators
    const s = c.status(leader)!
    if (s.joint || s.catchingUp.length > 0) return
    const voters = [...s.voters]
    const adds = voters.length >= 7 ? 0 : r.int(Math.min(3, 8 - voters.length))
    const removes = voters.length <= 3 ? 0 : r.int(Math.min(3, voters.length - 2))
    const spares = c
      .upNodes()
      .map((n) => n.id)
      .filter((id) => !voters.includes(id) && !this.retirements.has(id))
    const next = r.shuffle(voters).slice(removes)
    for (let i = 0; i < adds; i++) {
      const reuse = spares.length > 0 && r.chance(0.8)
      next.push(reuse ? spares.splice(r.int(spares.length), 1)[0] : c.addSpare())
    }
    if (next.length < 3) return
    c.changeMembership(next, leader)
  }

  /** A node the group removed is shut down a little later, or stays around as a spare. */
  private retireRemoved(): void {
    const c = this.c
    const members = new Set(c.members())
    for (const m of members) this.everMember.add(m)
    for (const n of c.nodes.values()) {
      if (n.retired || !this.everMember.has(n.id)) continue
      if (members.has(n.id)) {
        this.removedSeen.delete(n.id)
        this.retirements.delete(n.id)
        continue
      }
      if (!this.removedSeen.has(n.id)) {
        this.removedSeen.add(n.id)
        if (this.operators.chance(0.5)) this.retirements.set(n.id, c.now + this.operators.range(0, 100))
        continue
      }
      const at = this.retirements.get(n.id)
      if (at === undefined || at > c.now) continue
      this.retirements.delete(n.id)
      this.restarts.delete(n.id)
      c.retire(n.id)
    }
  }
}
