import { bootstrapPersisted, RaftCore } from "../../src/domain/raft/core.js"
import type { Message } from "../../src/domain/raft/messages.js"
import { defaultRaftOptions, type RaftOptions } from "../../src/domain/raft/options.js"
import type { Notice, Persisted } from "../../src/domain/raft/ready.js"
import type { Entry, HardState, Snapshot } from "../../src/domain/raft/types.js"

/** Durable state of one scripted node, in memory: survives `crash`. */
class MemStore {
  hardState: HardState = { term: 0, vote: null, commit: 0 }
  snapshot: Snapshot | undefined
  entries: Array<Entry> = []
  constructor(p: Persisted) {
    this.hardState = p.hardState
    this.snapshot = p.snapshot
    this.entries = [...p.entries]
  }
  load(): Persisted {
    return { hardState: this.hardState, snapshot: this.snapshot, entries: [...this.entries] }
  }
}

/**
 * A small synchronous network of cores for scripted tests: messages are delivered in order
 * unless a link is cut or a filter drops them. The randomised fault simulator is in test/sim.
 */
export class Scripted {
  readonly cores = new Map<string, RaftCore>()
  readonly stores = new Map<string, MemStore>()
  readonly applied = new Map<string, Array<Entry>>()
  readonly notices: Array<Notice & { node: string }> = []
  readonly sent: Array<Message> = []
  private queue: Array<Message> = []
  private cut = new Set<string>()
  drop: (m: Message) => boolean = () => false

  constructor(
    readonly ids: ReadonlyArray<string>,
    readonly tweak: Partial<RaftOptions> = {}
  ) {
    for (const id of ids) this.add(id, ids)
  }

  add(id: string, voters: ReadonlyArray<string>): RaftCore {
    const store = new MemStore(bootstrapPersisted({ voters: [...voters], outgoing: [], learners: [] }))
    this.stores.set(id, store)
    this.applied.set(id, [])
    return this.start(id)
  }

  options(id: string): RaftOptions {
    const seed = [...id].reduce((a, c) => a * 31 + c.charCodeAt(0), 7)
    return { ...defaultRaftOptions("g", id, seed), snapshotEntries: 0, ...this.tweak }
  }

  start(id: string): RaftCore {
    const core = new RaftCore(this.options(id), this.stores.get(id)!.load())
    this.cores.set(id, core)
    this.applied.set(id, [])
    const snap = this.stores.get(id)!.snapshot
    if (snap && snap.data) this.applied.set(id, JSON.parse(snap.data))
    return core
  }

  crash(id: string): void {
    this.cores.delete(id)
    this.queue = this.queue.filter((m) => m.to !== id && m.from !== id)
  }

  isolate(id: string): void {
    for (const o of this.ids) if (o !== id) this.cut.add(`${id}>${o}`).add(`${o}>${id}`)
  }

  partition(a: ReadonlyArray<string>, b: ReadonlyArray<string>): void {
    for (const x of a) for (const y of b) this.cut.add(`${x}>${y}`).add(`${y}>${x}`)
  }

  heal(): void {
    this.cut.clear()
  }

  core(id: string): RaftCore {
    return this.cores.get(id)!
  }

  leaders(): Array<string> {
    return [...this.cores.values()].filter((c) => c.status().role === "leader").map((c) => c.id)
  }

  leader(): string {
    const ls = this.leaders()
    if (ls.length !== 1) throw new Error(`expected one leader, got ${ls.join(",") || "none"}`)
    return ls[0]
  }

  /** Runs `ticks` rounds: tick every node, then deliver until quiet. */
  run(ticks: number): void {
    for (let i = 0; i < ticks; i++) {
      for (const c of this.cores.values()) c.tick()
      this.settle()
    }
  }

  /** Runs until some node leads, up to a bound. */
  elect(maxTicks = 200): string {
    for (let i = 0; i < maxTicks; i++) {
      this.run(1)
      const ls = this.leaders()
      if (ls.length === 1) return ls[0]
    }
    throw new Error("no leader elected")
  }

  settle(): void {
    for (let guard = 0; guard < 10_000; guard++) {
      for (const [id, c] of this.cores) this.drain(id, c)
      if (this.queue.length === 0) return
      const batch = this.queue
      this.queue = []
      for (const m of batch) {
        const to = this.cores.get(m.to)
        if (!to || this.cut.has(`${m.from}>${m.to}`) || this.drop(m)) continue
        to.receive(m)
      }
    }
    throw new Error("network did not settle")
  }

  private drain(id: string, c: RaftCore): void {
    while (c.hasReady()) {
      const r = c.ready()
      this.sent.push(...r.messages)
      this.queue.push(...r.messages)
      const st = this.stores.get(id)!
      if (r.snapshot) {
        st.snapshot = r.snapshot
        st.entries = st.entries.filter((e) => e.index > r.snapshot!.meta.index)
      }
      if (r.truncateFrom !== undefined) st.entries = st.entries.filter((e) => e.index < r.truncateFrom!)
      st.entries.push(...r.entries)
      if (r.hardState) st.hardState = r.hardState
      const last = st.entries.at(-1)
      if (last) c.persisted(last.index, last.term)
      this.sent.push(...r.messagesAfterPersist)
      this.queue.push(...r.messagesAfterPersist)
      const applied = this.applied.get(id)!
      if (r.snapshotToApply) applied.splice(0, applied.length, ...JSON.parse(r.snapshotToApply.data || "[]"))
      applied.push(...r.committed.filter((e) => e.payload._tag === "Command"))
      if (r.snapshotDue !== undefined) c.snapshotTaken(r.snapshotDue, JSON.stringify(applied))
      for (const n of r.notices) this.notices.push({ ...n, node: id })
    }
  }

  /** Proposes through the leader and returns the index. */
  propose(data: string): number {
    const r = this.core(this.leader()).propose([data])
    if (r._tag !== "Accepted") throw new Error(`proposal refused: ${r._tag}`)
    return r.firstIndex
  }

  appliedData(id: string): Array<string> {
    return this.applied.get(id)!.map((e) => (e.payload._tag === "Command" ? e.payload.data : ""))
  }
}
