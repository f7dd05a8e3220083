/**
 * The simulated network: one queue per directed link, each packet ready at a tick. Faults are
 * drawn from the network's own PRNG stream: drop, delay (a random delay also reorders),
 * occasional long delays, duplication, per-link capacity, clogged links (held, not lost) and
 * partitions (a side cut off both ways, or one way only) that last until a given tick.
 */
import type { Message } from "../../src/domain/raft/messages.js"
import type { Prng } from "./prng.js"

export interface NetworkFaults {
  readonly dropRate: number
  readonly duplicateRate: number
  readonly delayMinTicks: number
  readonly delayMaxTicks: number
  /** A packet held back far longer than the others, so it arrives after many later ones. */
  readonly longDelayRate: number
  readonly longDelayMaxTicks: number
  /** Packets beyond this many queued on one link are lost (a full socket buffer). */
  readonly linkCapacityMax: number
}

export const reliableNetwork: NetworkFaults = {
  dropRate: 0,
  duplicateRate: 0,
  delayMinTicks: 1,
  delayMaxTicks: 1,
  longDelayRate: 0,
  longDelayMaxTicks: 0,
  linkCapacityMax: 10_000
}

/** The 6.824 "unreliable" network: some loss, short random delays, rare long ones. */
export const unreliableNetwork: NetworkFaults = {
  dropRate: 0.1,
  duplicateRate: 0.02,
  delayMinTicks: 1,
  delayMaxTicks: 3,
  longDelayRate: 0.02,
  longDelayMaxTicks: 40,
  linkCapacityMax: 10_000
}

/**
 * `side` is cut off from every other node: "both" ways (a symmetric partition; one node alone
 * is an isolated node), "out" (the side's packets are lost, it still hears the others) or
 * "in" (it speaks but hears nothing).
 */
export interface Partition {
  readonly side: ReadonlySet<string>
  readonly direction: "both" | "out" | "in"
  readonly untilTick: number
  readonly label: string
}

interface Packet {
  readonly msg: Message
  readonly readyTick: number
  readonly seq: number
}

interface Clog {
  readonly from: string
  readonly to: string
  readonly untilTick: number
}

export interface NetworkStats {
  sent: number
  delivered: number
  dropped: number
  duplicated: number
  overflowed: number
  cut: number
}

export type PacketObserver = (msg: Message, event: "send" | "deliver") => void

const linkKey = (from: string, to: string): string => `${from}>${to}`

export class Network {
  private readonly links = new Map<string, Array<Packet>>()
  private partitions: Array<Partition> = []
  private clogs: Array<Clog> = []
  private cuts: Array<Clog> = []
  private seq = 0
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, overflowed: 0, cut: 0 }
  private readonly observers: Array<PacketObserver> = []

  constructor(
    private readonly prng: Prng,
    public faults: NetworkFaults = reliableNetwork
  ) {}

  observe(observer: PacketObserver): () => void {
    this.observers.push(observer)
    return () => {
      const i = this.observers.indexOf(observer)
      if (i >= 0) this.observers.splice(i, 1)
    }
  }

  send(msg: Message, now: number): void {
    this.stats.sent++
    for (const o of this.observers) o(msg, "send")
    if (this.isCut(msg.from, msg.to)) {
      this.stats.cut++
      return
    }
    if (this.prng.chance(this.faults.dropRate)) {
      this.stats.dropped++
      return
    }
    this.enqueue(msg, now)
    if (this.prng.chance(this.faults.duplicateRate)) {
      this.stats.duplicated++
      this.enqueue(msg, now)
    }
  }

  private enqueue(msg: Message, now: number): void {
    const key = linkKey(msg.from, msg.to)
    let queue = this.links.get(key)
    if (queue === undefined) {
      queue = []
      this.links.set(key, queue)
    }
    if (queue.length >= this.faults.linkCapacityMax) {
      this.stats.overflowed++
      return
    }
    const f = this.faults
    const delay = this.prng.chance(f.longDelayRate)
      ? this.prng.range(f.delayMaxTicks, Math.max(f.delayMaxTicks, f.longDelayMaxTicks))
      : this.prng.range(f.delayMinTicks, f.delayMaxTicks)
    const packet: Packet = { msg, readyTick: now + Math.max(1, delay), seq: this.seq++ }
    let i = queue.length
    while (i > 0 && queue[i - 1].readyTick > packet.readyTick) i--
    queue.splice(i, 0, packet)
  }

  /**
   * Takes every packet ready by `now`, in (ready tick, send order). A packet whose link is cut
   * when it arrives is lost; a clogged link keeps its packets for later.
   */
  deliverable(now: number): Array<Message> {
    const due: Array<Packet> = []
    for (const [key, queue] of this.links) {
      if (queue.length === 0 || queue[0].readyTick > now) continue
      const [from, to] = key.split(">")
      if (this.isClogged(from, to, now)) continue
      let n = 0
      while (n < queue.length && queue[n].readyTick <= now) n++
      for (const p of queue.splice(0, n)) {
        if (this.isCut(from, to)) this.stats.cut++
        else due.push(p)
      }
    }
    due.sort((x, y) => x.readyTick - y.readyTick || x.seq - y.seq)
    this.stats.delivered += due.length
    const out = due.map((p) => p.msg)
    for (const o of this.observers) for (const m of out) o(m, "deliver")
    return out
  }

  isCut(from: string, to: string): boolean {
    for (const c of this.cuts) if ((c.from === from && c.to === to) || (c.from === to && c.to === from)) return true
    for (const p of this.partitions) {
      const fromIn = p.side.has(from)
      const toIn = p.side.has(to)
      if (fromIn === toIn) continue
      if (p.direction === "both") return true
      if (p.direction === "out" && fromIn) return true
      if (p.direction === "in" && toIn) return true
    }
    return false
  }

  private isClogged(from: string, to: string, now: number): boolean {
    for (const c of this.clogs) if (c.from === from && c.to === to && c.untilTick > now) return true
    return false
  }

  partition(p: Partition): void {
    this.partitions.push(p)
  }

  /** Cuts `id` off from everyone, both ways, until `untilTick`. */
  isolate(id: string, untilTick = Number.MAX_SAFE_INTEGER): void {
    this.partition({ side: new Set([id]), direction: "both", untilTick, label: `isolate ${id}` })
  }

  /** Splits the nodes: `side` against everyone else, both ways. */
  split(side: ReadonlyArray<string>, untilTick = Number.MAX_SAFE_INTEGER): void {
    this.partition({ side: new Set(side), direction: "both", untilTick, label: `split [${side.join(",")}]` })
  }

  clog(from: string, to: string, untilTick: number): void {
    this.clogs.push({ from, to, untilTick })
  }

  /** Cuts the link between `a` and `b` only, both ways: a partial partition. */
  cut(a: string, b: string, untilTick = Number.MAX_SAFE_INTEGER): void {
    this.cuts.push({ from: a, to: b, untilTick })
  }

  activePartitions(): ReadonlyArray<Partition> {
    return this.partitions
  }

  /** Ends partitions and clogs whose time is over; returns the partitions that ended. */
  expire(now: number): Array<Partition> {
    const ended = this.partitions.filter((p) => p.untilTick <= now)
    if (ended.length > 0) this.partitions = this.partitions.filter((p) => p.untilTick > now)
    if (this.clogs.length > 0) this.clogs = this.clogs.filter((c) => c.untilTick > now)
    if (this.cuts.length > 0) this.cuts = this.cuts.filter((c) => c.untilTick > now)
    return ended
  }

  /** Ends the partitions that cut off `id` alone. */
  reconnect(id: string): void {
    this.partitions = this.partitions.filter((p) => !(p.side.size === 1 && p.side.has(id)))
  }

  /** Ends every partition, cut and clog, keeping the loss and delay rates. */
  clearPartitions(): void {
    this.partitions = []
    this.clogs = []
    this.cuts = []
  }

  /** Removes every fault: partitions, clogs, loss, duplication and long delays. */
  heal(): void {
    this.clearPartitions()
    this.faults = reliableNetwork
  }
}
