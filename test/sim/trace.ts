/**
 * The run's trace: every delivered packet and every harness event, folded into a hash (two
 * replays of a seed must give the same hash) and kept in a bounded ring for failure reports.
 * Packets are formatted only when a report or a verbose sink asks, to keep the hot path cheap.
 */
import type { Message } from "../../src/domain/raft/messages.js"

interface TraceEvent {
  readonly tick: number
  readonly step: number
  readonly text: string | undefined
  readonly msg: Message | undefined
}

export const formatMessage = (m: Message): string => {
  const head = `${m._tag} ${m.from}>${m.to} t${m.term}`
  switch (m._tag) {
    case "PreVote":
    case "RequestVote":
      return `${head} last=${m.lastLogIndex}/${m.lastLogTerm}${m._tag === "RequestVote" && m.transfer ? " transfer" : ""}`
    case "PreVoteResp":
    case "RequestVoteResp":
      return `${head} ${m.granted ? "granted" : "denied"}`
    case "AppendEntries":
      return `${head} prev=${m.prevLogIndex}/${m.prevLogTerm} n=${m.entries.length} commit=${m.commit}`
    case "AppendEntriesResp":
      return m.success
        ? `${head} ok match=${m.matchIndex}`
        : `${head} reject at=${m.rejectedIndex} hint=${m.conflictIndex}/${m.conflictTerm}`
    case "Heartbeat":
      return `${head} commit=${m.commit} round=${m.round}`
    case "HeartbeatResp":
      return `${head} round=${m.round} last=${m.lastIndex}`
    case "InstallSnapshot":
      return `${head} snap=${m.meta.index}/${m.meta.term} off=${m.offset} len=${m.data.length}${m.done ? " done" : ""}`
    case "InstallSnapshotResp":
      return `${head} snap=${m.index} next=${m.nextOffset}${m.installed ? " installed" : ""}`
    case "TimeoutNow":
      return head
  }
}

const fnv = (h: number, s: string): number => {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0
  return h
}

export class Trace {
  private readonly ring: Array<TraceEvent> = []
  private next = 0
  private hash = 0x811c9dc5
  count = 0

  constructor(
    private readonly limit: number,
    private readonly sink?: (line: string) => void
  ) {}

  event(tick: number, step: number, text: string): void {
    this.hash = fnv(this.hash, text)
    this.push({ tick, step, text, msg: undefined })
  }

  delivered(tick: number, step: number, msg: Message): void {
    this.hash = fnv(fnv(fnv(this.hash, msg._tag), msg.from), msg.to)
    this.hash = Math.imul(this.hash ^ msg.term, 0x01000193) >>> 0
    this.push({ tick, step, text: undefined, msg })
  }

  private push(e: TraceEvent): void {
    this.count++
    if (this.sink) this.sink(format(e))
    if (this.limit <= 0) return
    if (this.ring.length < this.limit) this.ring.push(e)
    else this.ring[this.next] = e
    this.next = (this.next + 1) % this.limit
  }

  /** A fingerprint of everything traced so far. */
  digest(): string {
    return `${this.hash.toString(16).padStart(8, "0")}:${this.count}`
  }

  /** The last events, oldest first. */
  recent(): Array<string> {
    const ordered = this.ring.length < this.limit ? this.ring : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)]
    return ordered.map(format)
  }
}

const format = (e: TraceEvent): string =>
  `t=${e.tick} s=${e.step} ${e.msg !== undefined ? `deliver ${formatMessage(e.msg)}` : e.text}`
