import { sleep } from "../integration/harness.js"
import type { Prng } from "../sim/prng.js"
import type { ChaosCluster, ChaosNode } from "./cluster.js"
import type { Recorder } from "./history.js"

/**
 * The nemesis: cycles of (quiet gap, one or two faults together for a while, undo). Every choice
 * is drawn from the run's seeded stream, in order, so a seed replays the same schedule up to OS
 * timing (targets such as "the leader" are whatever the monitor sees then).
 *
 * Faults: kill -9 and restart (a random node, the leader, a majority); SIGSTOP/SIGCONT (a random
 * node, the leader); partitions through each node's /debug/faults (one node isolated, the
 * leader isolated, majority/minority halves, a bridge, a ring of 5, a one-sided block); slow
 * links (delay). Overlays during faults: transfer_leader to random voters; membership churn of
 * the spare (add_peer / remove_peer).
 *
 * The fault switch drops a blocked peer's traffic in both directions on the node that blocks it,
 * so a one-sided block cuts the link both ways too; it differs from a clean partition only in
 * that the other side keeps sending. A true one-way partition cannot be expressed (see README).
 */

export const primaryKinds = ["kill", "pause", "partition", "slow", "disk"] as const
export const overlayKinds = ["transfer", "churn"] as const
export type NemesisKind = (typeof primaryKinds)[number] | (typeof overlayKinds)[number]
export const allKinds: ReadonlyArray<NemesisKind> = [...primaryKinds, ...overlayKinds]

export interface NemesisOptions {
  readonly kinds: ReadonlyArray<NemesisKind>
  readonly faultMs: readonly [number, number]
  readonly quietMs: readonly [number, number]
  readonly requestTimeoutMs: number
}

type Undo = () => Promise<void>

export interface NemesisStats {
  cycles: number
  faults: Record<string, number>
}

export class Nemesis {
  private stopped = false
  readonly stats: NemesisStats = { cycles: 0, faults: {} }
  private lastChurn = -Infinity
  private readonly process: number

  constructor(
    readonly cluster: ChaosCluster,
    readonly recorder: Recorder,
    readonly rng: Prng,
    readonly options: NemesisOptions
  ) {
    this.process = recorder.newProcess()
  }

  stop(): void {
    this.stopped = true
  }

  private count(label: string): void {
    this.stats.faults[label] = (this.stats.faults[label] ?? 0) + 1
  }

  /** Sleeps up to `ms`, waking early when stopped. */
  private async wait(ms: number): Promise<void> {
    const end = this.cluster.now() + ms
    while (!this.stopped && this.cluster.now() < end) await sleep(Math.min(100, end - this.cluster.now()))
  }

  /** Runs cycles until `untilMs` on the cluster clock (or stop), undoing the faults of each cycle. */
  async run(untilMs: number): Promise<void> {
    const primaries = primaryKinds.filter((k) => this.options.kinds.includes(k))
    while (!this.stopped && this.cluster.now() < untilMs) {
      await this.wait(this.rng.range(this.options.quietMs[0], this.options.quietMs[1]))
      if (this.stopped || this.cluster.now() >= untilMs) break
      this.stats.cycles++
      const undos: Array<Undo> = []
      const chosen = primaries.length === 0 ? [] : this.rng.shuffle(primaries).slice(0, this.rng.chance(0.35) ? 2 : 1)
      for (const kind of chosen) {
        const undo = await this.apply(kind)
        if (undo !== undefined) undos.push(undo)
      }
      const duration = this.rng.range(this.options.faultMs[0], this.options.faultMs[1])
      const end = Math.min(this.cluster.now() + duration, untilMs)
      const overlays: Array<Promise<void>> = []
      if (this.options.kinds.includes("transfer") && this.rng.chance(0.4)) overlays.push(this.transfers(end))
      if (this.options.kinds.includes("churn") && this.cluster.spare !== undefined && this.cluster.now() - this.lastChurn > 10_000 && this.rng.chance(0.5)) {
        this.lastChurn = this.cluster.now()
        overlays.push(this.churn())
      }
      await this.wait(end - this.cluster.now())
      await Promise.all(overlays)
      for (const undo of undos.reverse()) await undo()
    }
  }

  private async apply(kind: (typeof primaryKinds)[number]): Promise<Undo | undefined> {
    const c = this.cluster
    // The voters: the core members, and the spare while churn has it in the group.
    const voters = c.currentVoters()
    const members = c.all.filter((n) => n.kind === "core" || voters.includes(n.node.raft))
    const up = (n: ChaosNode) => !n.down && !n.paused && n.starting === undefined
    const leaderOr = () => c.currentLeader() ?? this.rng.pick(members)
    switch (kind) {
      case "kill": {
        const r = this.rng.float()
        let victims: Array<ChaosNode>
        let label: string
        if (r < 0.4) {
          victims = [this.rng.pick(members)]
          label = "kill-random"
        } else if (r < 0.75) {
          victims = [leaderOr()]
          label = "kill-leader"
        } else {
          victims = this.rng.shuffle(members).slice(0, Math.floor(members.length / 2) + 1)
          label = "kill-majority"
        }
        victims = victims.filter((v) => !v.down && v.starting === undefined)
        if (victims.length === 0) return undefined
        this.count(label)
        c.log(`nemesis ${label}: ${victims.map((v) => v.node.name).join(",")}`)
        await Promise.all(victims.map((v) => c.kill(v)))
        return async () => {
          await Promise.all(victims.map((v) => c.restart(v)))
        }
      }
      case "pause": {
        const leader = this.rng.chance(0.5)
        const victim = leader ? leaderOr() : this.rng.pick(members)
        if (!up(victim)) return undefined
        this.count(leader ? "pause-leader" : "pause-random")
        c.log(`nemesis ${leader ? "pause-leader" : "pause-random"}: ${victim.node.name}`)
        c.pause(victim)
        return async () => {
          await c.resume(victim)
        }
      }
      case "partition":
        return this.partition()
      case "disk": {
        // A slow disk: every raft.db write (fsync) of the victim, often the leader, waits.
        const leader = this.rng.chance(0.5)
        const victim = leader ? leaderOr() : this.rng.pick(members)
        if (!up(victim)) return undefined
        const ms = this.rng.range(5, 80)
        this.count(leader ? "slow-disk-leader" : "slow-disk-random")
        c.log(`nemesis slow disk of ${victim.node.name}: ${ms} ms per write`)
        await c.diskDelay(victim, ms)
        return async () => {
          c.log(`nemesis slow disk of ${victim.node.name}: removed`)
          await c.diskDelay(victim, 0)
        }
      }
      case "slow": {
        const victim = this.rng.pick(members)
        const ms = this.rng.range(20, 150)
        const peers = c.all.filter((n) => n !== victim)
        this.count("slow-node")
        c.log(`nemesis slow links of ${victim.node.name}: ${ms} ms`)
        await Promise.all(peers.flatMap((p) => [c.delay(victim, p, ms), c.delay(p, victim, ms)]))
        return async () => {
          c.log(`nemesis slow links of ${victim.node.name}: removed`)
          await Promise.all(peers.flatMap((p) => [c.delay(victim, p, 0), c.delay(p, victim, 0)]))
        }
      }
    }
  }

  private async partition(): Promise<Undo> {
    const c = this.cluster
    const members = this.rng.shuffle(c.members)
    const others = (x: ChaosNode) => c.all.filter((n) => n !== x)
    const shapes = ["isolate-random", "isolate-leader", "halves", "bridge", "one-sided", ...(members.length >= 5 ? ["ring"] : [])]
    const shape = this.rng.pick(shapes)
    this.count(`partition-${shape}`)
    let links: Array<[ChaosNode, ChaosNode]> = []
    switch (shape) {
      case "isolate-random":
      case "isolate-leader": {
        const victim = shape === "isolate-leader" ? (c.currentLeader() ?? members[0]) : members[0]
        links = await c.partition([[victim], others(victim)], shape)
        break
      }
      case "halves": {
        const k = Math.floor(members.length / 2)
        const minority = members.slice(0, k)
        const majority = c.all.filter((n) => !minority.includes(n))
        links = await c.partition([minority, majority], shape)
        break
      }
      case "bridge": {
        // Two sides that cannot talk, and one node that talks to both (it can win both halves' votes).
        const bridge = members[0]
        const rest = members.slice(1)
        const left = rest.slice(0, Math.ceil(rest.length / 2))
        const right = rest.slice(Math.ceil(rest.length / 2))
        for (const a of left) for (const b of right) links.push([a, b])
        await c.cutLinks(links, `partition bridge via ${bridge.node.name}`)
        break
      }
      case "ring": {
        // Each node hears only its two ring neighbours: no majority is fully connected.
        for (let i = 0; i < members.length; i++) {
          for (let j = i + 1; j < members.length; j++) {
            const d = Math.min(j - i, members.length - (j - i))
            if (d > 1) links.push([members[i], members[j]])
          }
        }
        await c.cutLinks(links, `partition ring ${members.map((m) => m.node.name).join("-")}`)
        break
      }
      case "one-sided": {
        // The leader (or a random node) blocks some peers; those peers do not block it back.
        const from = this.rng.chance(0.5) ? (c.currentLeader() ?? members[0]) : members[0]
        const targets = this.rng.shuffle(others(from)).slice(0, this.rng.range(1, Math.max(1, Math.floor(members.length / 2))))
        links = targets.map((t) => [from, t] as [ChaosNode, ChaosNode])
        await c.cutLinks(links, "partition one-sided", true)
        break
      }
    }
    return async () => {
      await c.restoreLinks(links, `heal ${shape}`)
    }
  }

  /** transfer_leader to random voters through random nodes until `end`. */
  private async transfers(end: number): Promise<void> {
    const c = this.cluster
    this.count("transfer-leader")
    while (!this.stopped && c.now() < end) {
      const voters = c.currentVoters()
      const target = this.rng.pick(voters)
      const via = this.rng.pick(c.all)
      c.log(`nemesis transfer_leader to ${c.name(target)} via ${via.node.name}`)
      const op = await this.recorder.submit(this.process, "nemesis", { name: via.node.name, http: via.node.http }, "transfer_leader", { target_leader: target }, this.options.requestTimeoutMs)
      c.log(`nemesis transfer_leader -> ${op.outcome}${op.jobId ? ` job ${op.jobId}` : ""}${op.errorCode ? ` ${op.errorCode}` : ""}`)
      await this.wait(this.rng.range(300, 1500))
    }
  }

  /** add_peer of the spare if it is not a voter, remove_peer if it is. */
  private async churn(): Promise<void> {
    const c = this.cluster
    const spare = c.spare!
    const isVoter = c.currentVoters().includes(spare.node.raft)
    const task = isVoter ? "remove_peer" : "add_peer"
    const via = this.rng.pick(c.members)
    this.count(task)
    c.log(`nemesis ${task} ${spare.node.name} via ${via.node.name}`)
    const op = await this.recorder.submit(this.process, "nemesis", { name: via.node.name, http: via.node.http }, task, { peer: spare.node.raft }, this.options.requestTimeoutMs)
    c.log(`nemesis ${task} -> ${op.outcome}${op.jobId ? ` job ${op.jobId}` : ""}${op.errorCode ? ` ${op.errorCode}` : ""}`)
  }
}
