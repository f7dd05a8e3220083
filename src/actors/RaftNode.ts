import { Cause, Chunk, Clock, Context, Data, Deferred, Effect, Exit, Layer, Mailbox, Metric, Option, Runtime, type Scope, SubscriptionRef } from "effect"
import { encodeCommand, type StateCommand } from "../domain/jobs.js"
import { bootstrapPersisted, RaftCore } from "../domain/raft/core.js"
import type { RaftOptions } from "../domain/raft/options.js"
import type { Message } from "../domain/raft/messages.js"
import type { Notice, Persisted, RaftMembership, RaftStatus, Ready, Refusal, Role } from "../domain/raft/ready.js"
import type { ClusterState, Job } from "../domain/state.js"
import type { Journal, JournalRow } from "../storage/Journal.js"
import { asRaftLog, type RaftLog } from "../storage/RaftLog.js"
import type { RaftStorage } from "../storage/RaftStorage.js"
import { metrics } from "./metrics.js"
import { TransportControl } from "./TransportControl.js"
import { type AppliedEntry, StateMachine } from "./StateMachine.js"
import { type Inbound, Transport } from "./Transport.js"

// ------------------------------------------------------------------ errors operators meet

export class NotLeader extends Data.TaggedError("NotLeader")<{ readonly leader: string | null }> {}
export class Busy extends Data.TaggedError("Busy")<{ readonly reason: string }> {}
export class InvalidChange extends Data.TaggedError("InvalidChange")<{ readonly reason: string }> {}
/** The operation was started but did not complete: timeout, lost leadership, lagging peer. */
export class OperationFailed extends Data.TaggedError("OperationFailed")<{ readonly reason: string }> {}

/** A proposal or read that neither completed nor failed within RaftNodeSettings.operationTimeoutMs. */
export class TimedOut extends Data.TaggedError("TimedOut")<{ readonly reason: string }> {}

export type RaftError = NotLeader | Busy | InvalidChange | OperationFailed | TimedOut

const fromRefusal = (r: Refusal): RaftError => {
  switch (r._tag) {
    case "NotLeader":
      return new NotLeader({ leader: r.leader })
    case "TransferInProgress":
      return new Busy({ reason: `a leadership transfer to ${r.target} is in progress` })
    case "ChangeInProgress":
      return new Busy({ reason: "a membership change is in progress" })
    case "InvalidChange":
      return new InvalidChange({ reason: r.reason })
  }
}

// ------------------------------------------------------------------ the service

/** Who leads, as seen by this node; published on every change. */
export interface Leadership {
  readonly role: Role
  readonly term: number
  readonly leader: string | null
}

export interface RaftNodeApi {
  readonly id: string
  /** Proposes a command; succeeds once it is committed and applied here, with its events. */
  readonly submit: (command: StateCommand) => Effect.Effect<AppliedEntry, RaftError>
  /**
   * `submit` for a caller outside any fiber (the HTTP hot path): the proposal is queued at once
   * and `onDone` is called when it is applied here or has failed. No fiber waits for it.
   */
  readonly submitNow: (command: StateCommand, onDone: (exit: Exit.Exit<AppliedEntry, RaftError>) => void) => void
  /** The replicated state, linearizably: confirmed leadership and applied up to the read index. */
  readonly read: Effect.Effect<ClusterState, RaftError>
  /** This node's state as applied so far (may lag the leader). */
  readonly localState: Effect.Effect<ClusterState>
  /**
   * A job as of `state` (from `read` or `localState`): from the state, or from this node's
   * journal for an old finished job the state no longer holds (StateMachine.job).
   */
  readonly job: (state: ClusterState, jobId: string) => Effect.Effect<Option.Option<Job>>
  /** Up to `limit` journal rows at or below `toSeq`, newest first, for a peer's history (Journal.page). */
  readonly journalPage: (toSeq: number, limit: number) => Effect.Effect<ReadonlyArray<JournalRow>>
  /** Whether this node still copies the events before its snapshot base (Journal.historyIncomplete). */
  readonly historyIncomplete: Effect.Effect<boolean>
  readonly changeMembership: (voters: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<string>, RaftError>
  readonly transferLeadership: (target: string) => Effect.Effect<string, RaftError>
  readonly status: Effect.Effect<RaftStatus>
  /**
   * The core's membership view and, beside it, `localState`, read synchronously: the HTTP hot
   * path decides without a fiber, and without `status`'s per-peer array.
   */
  readonly membershipNow: () => RaftMembership
  readonly stateNow: () => ClusterState
  readonly leadership: SubscriptionRef.SubscriptionRef<Leadership>
  /**
   * Subscribes, for the scope, to every entry this node applies from now on, with its events, in
   * order. Each subscriber gets a Mailbox of its own (an array swapped on each take): a PubSub's
   * linked list promoted every applied entry to V8's old generation while anyone subscribed (see
   * docs/design.md, "RaftNode, the actor").
   */
  readonly applied: Effect.Effect<Mailbox.ReadonlyMailbox<AppliedEntry>, never, Scope.Scope>
}

export class RaftNode extends Context.Tag("cluster_mgr/RaftNode")<RaftNode, RaftNodeApi>() {}

export interface RaftNodeSettings {
  readonly raft: RaftOptions
  readonly tickMs: number
  /** Voters written on first start into an empty data directory. */
  readonly initialVoters: ReadonlyArray<string>
  /**
   * raft.db: a RaftLog (openRaftLog: persisting on a writer thread or inline), or a RaftStorage,
   * used inline. Its owner closes it.
   */
  readonly storage: RaftStorage | RaftLog
  /** Called once if the actor dies of a defect (it can no longer persist or apply anything). */
  readonly onActorDeath?: (cause: Cause.Cause<unknown>) => void
  readonly journal: Journal
  /**
   * Proposals and reads still waiting after this long fail with TimedOut (outcome unknown), for
   * when neither commit nor a lost leadership ends them (CheckQuorum off). Default 10 s.
   */
  readonly operationTimeoutMs?: number
}

// ------------------------------------------------------------------ the actor

type Input =
  | { readonly _tag: "Tick" }
  | { readonly _tag: "Inbound"; readonly inbound: Inbound }
  | { readonly _tag: "Propose"; readonly data: string; readonly done: Done<AppliedEntry> }
  | { readonly _tag: "Change"; readonly voters: ReadonlyArray<string>; readonly done: Done<ReadonlyArray<string>> }
  | { readonly _tag: "Transfer"; readonly target: string; readonly done: Done<string> }
  | { readonly _tag: "Read"; readonly done: Done<ClusterState> }

/**
 * Who waits for an operation: a fiber (a Deferred it awaits) or a plain callback (submitNow).
 * The actor settles either at once; a fiber resumes on its own scheduling, a callback runs now.
 */
type Done<A> = Deferred.Deferred<A, RaftError> | ((exit: Exit.Exit<A, RaftError>) => void)

const settle = <A>(done: Done<A>, exit: Exit.Exit<A, RaftError>): void => {
  if (typeof done === "function") done(exit)
  else Deferred.unsafeDone(done, exit)
}
const succeed = <A>(done: Done<A>, value: A): void => settle(done, Exit.succeed(value))
const failWith = <A>(done: Done<A>, error: RaftError): void => settle(done, Exit.fail(error))

interface Waiting<A> {
  readonly done: Done<A>
}

/** Proposals and reads carry a deadline, checked by the actor: no timer or fiber per request. */
interface Timed<A> extends Waiting<A> {
  readonly deadline: number
}

const sweepEveryMs = 100

/**
 * Where a Ready's raft.db write runs: inline, the event loop waiting for its fsync, or on the
 * writer thread (a RaftLog in "worker" mode; a "sync" one writes inline anyway).
 * A follower writes inline: it has nothing to do until its write is durable. A leader uses the
 * thread so that HTTP requests and peer messages are read during its fsync, except while its
 * writes are lone (one entry, no other proposal in flight) and have been for the last
 * `loneWritesBeforeInline` writes, as with one client at a time: nothing would overlap those
 * fsyncs, and a leader that has not served concurrent clients never starts the thread. The
 * streak is needed because under concurrency a leader sees lone writes too (the first request
 * after a batch was answered, the others on their way), and writing those inline holds the
 * others up. A new leader starts with a full streak. Figures: docs/design.md, "Storage".
 */
export const loneWritesBeforeInline = 8

export const placeWrite = (
  leader: boolean,
  entries: number,
  proposalsInFlight: number,
  streak: number
): { readonly inline: boolean; readonly streak: number } => {
  if (!leader) return { inline: true, streak: loneWritesBeforeInline }
  // A write without entries (hard state, a compaction) says nothing about the clients.
  if (entries === 0) return { inline: streak >= loneWritesBeforeInline, streak }
  const lone = entries === 1 && proposalsInFlight <= 1
  const next = lone ? Math.min(streak + 1, loneWritesBeforeInline) : 0
  return { inline: lone && next >= loneWritesBeforeInline, streak: next }
}

/** Inputs handled as one batch at most: bounds one Ready's transaction and messages. */
const batchInputsMax = 4096

/**
 * The node's single actor fiber: it alone touches the core, the storage and the state machine,
 * taking inputs from one mailbox in batches (every proposal in a batch shares one fsync).
 */
class Actor {
  private readonly proposals = new Map<number, { term: number } & Timed<AppliedEntry>>()
  private readonly changes = new Map<string, Waiting<ReadonlyArray<string>>>()
  private readonly transfers = new Map<string, Waiting<string>>()
  private readonly reads = new Map<string, Timed<ClusterState>>()
  private readsAwaitingApply: Array<{ index: number } & Timed<ClusterState>> = []
  private lastSweep = 0
  /** The leader's lone writes in a row (placeWrite); full while following. */
  private loneStreak = loneWritesBeforeInline
  private seq = 0
  private lastPublished: Leadership | undefined
  /** Monotonic time up to which ticks were given to the core. */
  private tickedUpTo: bigint | undefined
  /** The wake-up armed (see armWakeUp): a Tick into the inbox at `wakeAtMs` (performance.now). */
  private wakeUp: ReturnType<typeof setTimeout> | undefined
  private wakeAtMs = Number.POSITIVE_INFINITY
  /** Set by makeRaftNode: puts a Tick in the inbox. */
  offerTick: () => void = () => {}

  constructor(
    readonly core: RaftCore,
    readonly sm: StateMachine,
    readonly log: RaftLog,
    readonly settings: RaftNodeSettings,
    readonly transport: Context.Tag.Service<Transport>,
    readonly leadership: SubscriptionRef.SubscriptionRef<Leadership>,
    /** The subscribers to applied entries (RaftNodeApi.applied). */
    readonly appliedTo: Set<Mailbox.Mailbox<AppliedEntry>>,
    readonly clock: Clock.Clock,
    /** The test-only slow-disk fault; undefined when faults cannot be injected. */
    readonly diskDelayMs: Effect.Effect<number> | undefined
  ) {}

  /**
   * One batch of inputs, run synchronously as far as it can be: an Effect is built only for
   * what has to wait (a write on the writer thread, messages queued behind a busy connection, a
   * leadership change to publish): a batch that waits for nothing costs no Effect per step.
   * Figures: docs/design.md, "RaftNode, the actor".
   */
  handleBatch(inputs: Iterable<Input>): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.catchUpTicks(this.clock.unsafeCurrentTimeNanos())
      this.expireOverdue()
      const proposals: Array<Extract<Input, { _tag: "Propose" }>> = []
      for (const input of inputs) {
        if (input._tag === "Propose") proposals.push(input)
        else this.handle(input)
      }
      if (proposals.length > 0) this.propose(proposals)
      return (
        andThen(this.drain(), () =>
          andThen(this.publishLeadership(), () => {
            this.armWakeUp(this.clock.unsafeCurrentTimeNanos())
            return undefined
          })) ?? Effect.void
      )
    })
  }

  /**
   * The actor sleeps until the core next has something to do on its own (ticksUntilDue: a
   * heartbeat, a timeout), or until pending operations are due for the overdue sweep, instead
   * of waking every tick: an idle follower wakes for its leader's heartbeats only. One timer,
   * moved only when the new wake-up is earlier; a timer that fires early finds nothing due and
   * arms the next. A plain timer rather than a sleeping fiber: it is re-armed after every batch.
   */
  private armWakeUp(now: bigint): void {
    if (this.tickedUpTo === undefined) return
    const nowMs = performance.now()
    const sinceTickedMs = Number(now - this.tickedUpTo) / 1e6
    let atMs = nowMs - sinceTickedMs + this.core.ticksUntilDue() * this.settings.tickMs
    if (this.proposals.size > 0 || this.reads.size > 0 || this.readsAwaitingApply.length > 0) {
      atMs = Math.min(atMs, this.lastSweep + sweepEveryMs)
    }
    if (this.wakeUp !== undefined && this.wakeAtMs <= atMs) return
    this.stopWakeUp()
    this.wakeAtMs = atMs
    this.wakeUp = setTimeout(() => {
      this.wakeUp = undefined
      this.wakeAtMs = Number.POSITIVE_INFINITY
      this.offerTick()
    }, Math.max(0, Math.ceil(atMs - nowMs) + 1)) // late by a millisecond rather than early
  }

  stopWakeUp(): void {
    if (this.wakeUp !== undefined) clearTimeout(this.wakeUp)
    this.wakeUp = undefined
    this.wakeAtMs = Number.POSITIVE_INFINITY
  }

  /**
   * Ticks follow the monotonic clock, not the number of Tick inputs: a process that was paused
   * (SIGSTOP, a GC pause, a frozen VM) or stuck in a slow fsync must see every tick it missed
   * before it handles anything else, or a leader would serve lease reads on a lease that expired
   * while it was stopped. Capped: past a few election timeouts more ticks change nothing.
   */
  private catchUpTicks(now: bigint): void {
    const tickNanos = BigInt(Math.round(this.settings.tickMs * 1e6))
    if (this.tickedUpTo === undefined) {
      this.tickedUpTo = now
      return
    }
    const due = (now - this.tickedUpTo) / tickNanos
    if (due <= 0n) return
    this.tickedUpTo += due * tickNanos
    const cap = 4 * this.settings.raft.electionTicks + 1
    for (let i = 0; i < Math.min(Number(due), cap); i++) this.core.tick()
  }

  private deadline(): number {
    return performance.now() + (this.settings.operationTimeoutMs ?? 10_000)
  }

  /** Fails proposals and reads past their deadline; the maps hold them oldest first. */
  private expireOverdue(): void {
    const now = performance.now()
    if (now - this.lastSweep < sweepEveryMs) return
    this.lastSweep = now
    const error = new TimedOut({ reason: "the operation did not finish in time; its outcome is unknown" })
    const sweep = <K, A>(m: Map<K, Timed<A>>) => {
      for (const [k, w] of m) {
        if (w.deadline > now) break
        m.delete(k)
        failWith(w.done, error)
      }
    }
    sweep(this.proposals)
    sweep(this.reads)
    if (this.readsAwaitingApply.some((r) => r.deadline <= now)) {
      const overdue = this.readsAwaitingApply.filter((r) => r.deadline <= now)
      this.readsAwaitingApply = this.readsAwaitingApply.filter((r) => r.deadline > now)
      for (const r of overdue) failWith(r.done, error)
    }
  }

  private handle(input: Exclude<Input, { _tag: "Propose" }>): void {
    switch (input._tag) {
      case "Tick":
        return // it only wakes the actor: catchUpTicks counts the time
      case "Inbound":
        if (input.inbound._tag === "Message") this.core.receive(input.inbound.message)
        else this.core.peerUnreachable(input.inbound.peer)
        return
      case "Change":
        return this.startOperation(this.changes, input.done, (id) => this.core.changeMembership(id, input.voters))
      case "Transfer":
        return this.startOperation(this.transfers, input.done, (id) => this.core.transferLeadership(id, input.target))
      case "Read":
        return this.startOperation(this.reads, input.done, (id) => this.core.readIndex(id), this.deadline())
    }
  }

  private startOperation<A, W extends Waiting<A>>(
    pending: Map<string, W>,
    done: Done<A>,
    start: (id: string) => Refusal | undefined,
    deadline?: number
  ): void {
    const id = String(++this.seq)
    pending.set(id, (deadline === undefined ? { done } : { done, deadline }) as W)
    const refusal = start(id)
    if (!refusal) return
    pending.delete(id)
    failWith(done, fromRefusal(refusal))
  }

  private propose(inputs: ReadonlyArray<Extract<Input, { _tag: "Propose" }>>): void {
    const result = this.core.propose(inputs.map((p) => p.data))
    if (result._tag !== "Accepted") {
      const error = fromRefusal(result)
      for (const p of inputs) failWith(p.done, error)
      return
    }
    const deadline = this.deadline()
    inputs.forEach((p, i) => this.proposals.set(result.firstIndex + i, { term: result.term, done: p.done, deadline }))
    metrics.proposals.unsafeUpdate(inputs.length, [])
  }

  /**
   * Carries out every Ready the core has, in the order ready.ts prescribes. With a writer thread
   * (RaftLog "worker") the fiber waits for the commit and the event loop runs meanwhile: the
   * messages just sent leave, HTTP requests and peer messages are read, and what arrives waits
   * in the inbox for the next batch (a bigger one: group commit). Nothing after persisting
   * (messagesAfterPersist, core.persisted, apply, notices) runs before the fsync is done.
   */
  private drain(): Effect.Effect<void> | undefined {
    while (this.core.hasReady()) {
      const ready = this.core.ready()
      const rest = andThen(this.send(ready.messages), () =>
        andThen(this.persist(ready), () =>
          andThen(this.send(ready.messagesAfterPersist), () => {
            this.apply(ready)
            if (ready.snapshotDue !== undefined) this.core.snapshotTaken(ready.snapshotDue, this.sm.snapshotImage())
            for (const n of ready.notices) this.notice(n)
            return undefined
          })))
      // Something had to wait: the rest of this Ready, then the next ones, follow it.
      if (rest !== undefined) return Effect.flatMap(rest, () => this.drain() ?? Effect.void)
    }
    return undefined
  }

  private send(messages: ReadonlyArray<Message>): Effect.Effect<void> | undefined {
    return messages.length > 0 ? this.transport.sendNow(messages) : undefined
  }

  /**
   * A store that cannot write stops the actor (a defect, as a throw from an inline write always
   * did): a node that cannot persist must not acknowledge anything. An inline write throws here,
   * inside handleBatch's Effect.suspend, which makes the throw a defect too.
   */
  private persist(ready: Ready): Effect.Effect<void> | undefined {
    const persisted = () => {
      const last = ready.entries.at(-1)
      if (last) {
        this.core.persisted(last.index, last.term)
        metrics.persistEntries.unsafeUpdate(ready.entries.length, [])
      }
      return undefined
    }
    const inline = this.placeWrite(ready)
    const writes = ready.entries.length > 0 || ready.hardState !== undefined || ready.snapshot !== undefined
    if (writes && this.diskDelayMs !== undefined) {
      return this.diskDelayMs.pipe(
        Effect.flatMap((ms) => (ms > 0 ? Effect.sleep(ms) : Effect.void)),
        Effect.zipRight(this.log.persist(ready, inline)),
        Effect.orDie,
        Effect.map(persisted)
      )
    }
    const write = this.log.persistNow(ready, inline)
    return write === undefined ? persisted() : Effect.map(Effect.orDie(write), persisted)
  }

  /** Whether this Ready's write runs inline (placeWrite), keeping the leader's streak. */
  private placeWrite(ready: Ready): boolean {
    const placed = placeWrite(this.core.isLeader(), ready.entries.length, this.proposals.size, this.loneStreak)
    this.loneStreak = placed.streak
    return placed.inline
  }

  private apply(ready: Ready): void {
    if (ready.snapshotToApply) {
      this.sm.install(ready.snapshotToApply.data, ready.snapshotToApply.meta.index)
      this.failProposalsUpTo(ready.snapshotToApply.meta.index)
    }
    if (ready.committed.length > 0) {
      // Proposers are answered before this node's journal write (StateMachine.apply).
      const applied = this.sm.apply(ready.committed, (fresh) => {
        for (const entry of ready.committed) this.settleProposal(entry.index, entry.term, fresh)
      })
      if (applied.length > 0) for (const subscriber of this.appliedTo) subscriber.unsafeOfferAll(applied)
      metrics.appliedIndex.unsafeUpdate(this.sm.appliedIndex(), [])
      metrics.commitIndex.unsafeUpdate(this.core.commitIndex(), [])
    }
    this.settleReads()
  }

  private settleProposal(index: number, term: number, applied: ReadonlyArray<AppliedEntry>): void {
    const waiting = this.proposals.get(index)
    if (!waiting) return
    this.proposals.delete(index)
    if (waiting.term !== term) {
      failWith(waiting.done, new OperationFailed({ reason: "leadership changed before the proposal committed" }))
      return
    }
    succeed(waiting.done, applied.find((a) => a.index === index) ?? { index, term, events: [] })
  }

  /** Proposals covered by an installed snapshot have unknown fate here: say so. */
  private failProposalsUpTo(index: number): void {
    const lost = [...this.proposals.entries()].filter(([i]) => i <= index)
    for (const [i] of lost) this.proposals.delete(i)
    for (const [, w] of lost) failWith(w.done, new OperationFailed({ reason: "leadership changed; outcome unknown" }))
  }

  private settleReads(): void {
    const applied = this.sm.appliedIndex()
    if (!this.readsAwaitingApply.some((r) => r.index <= applied)) return
    const ready = this.readsAwaitingApply.filter((r) => r.index <= applied)
    this.readsAwaitingApply = this.readsAwaitingApply.filter((r) => r.index > applied)
    for (const r of ready) succeed(r.done, this.sm.state)
  }

  private notice(n: Notice): void {
    const take = <A>(m: Map<string, Waiting<A>>) => {
      const w = m.get(n.id)
      m.delete(n.id)
      return w
    }
    switch (n._tag) {
      case "ConfChangeDone":
        return complete(take(this.changes), n.voters)
      case "ConfChangeFailed":
        return fail(take(this.changes), n.reason)
      case "TransferDone":
        return complete(take(this.transfers), n.leader)
      case "TransferFailed":
        return fail(take(this.transfers), n.reason)
      case "ReadFailed":
        return fail(take(this.reads), n.reason)
      case "ReadReady": {
        const w = take(this.reads)
        if (w) this.readsAwaitingApply.push({ index: n.index, done: w.done, deadline: (w as Timed<ClusterState>).deadline })
        return this.settleReads()
      }
    }
  }

  private publishLeadership(): Effect.Effect<void> | undefined {
    const s = this.core.leadership()
    const prev = this.lastPublished
    if (prev && prev.role === s.role && prev.term === s.term && prev.leader === s.leader) return undefined
    const next: Leadership = { role: s.role, term: s.term, leader: s.leader }
    this.lastPublished = next
    return Effect.gen(this, function* () {
      if (prev?.role === "leader" && s.role !== "leader") this.failAllProposals()
      if (s.role === "leader" && prev?.role !== "leader") yield* Metric.increment(metrics.elections)
      yield* Metric.set(metrics.term, s.term)
      yield* Metric.set(metrics.commitIndex, this.core.commitIndex())
      yield* Metric.set(metrics.isLeader, s.role === "leader" ? 1 : 0)
      yield* SubscriptionRef.set(this.leadership, next)
      yield* Effect.logInfo(`role ${s.role}, term ${s.term}, leader ${s.leader ?? "none"}`)
    })
  }

  /**
   * A deposed leader cannot know whether its pending proposals will commit under the next
   * leader; clients get a clear failure instead of waiting (a retried job is a new job).
   */
  private failAllProposals(): void {
    const all = [...this.proposals.values()]
    this.proposals.clear()
    for (const w of all) failWith(w.done, new OperationFailed({ reason: "leadership lost before the proposal committed; outcome unknown" }))
  }
}

/** `next` after `first`: at once, in this turn, when `first` is nothing to wait for. */
const andThen = (
  first: Effect.Effect<void> | undefined,
  next: () => Effect.Effect<void> | undefined
): Effect.Effect<void> | undefined => (first === undefined ? next() : Effect.flatMap(first, () => next() ?? Effect.void))

const complete = <A>(w: Waiting<A> | undefined, value: A): void => {
  if (w) succeed(w.done, value)
}

const fail = <A>(w: Waiting<A> | undefined, reason: string): void => {
  if (w) failWith(w.done, new OperationFailed({ reason }))
}

/** Opens the node's state from its storage, bootstrapping an empty data directory. */
const loadPersisted = (settings: RaftNodeSettings, log: RaftLog) => {
  let persisted = log.load()
  if (!persisted) {
    persisted = bootstrapPersisted({ voters: [...settings.initialVoters], outgoing: [], learners: [] })
    log.bootstrap(persisted)
  }
  return persisted
}

const openCore = (settings: RaftNodeSettings, persisted: Persisted, sm: StateMachine): RaftCore => {
  const snap = persisted.snapshot
  // A crash between storing a received snapshot and loading it into the journal: finish it.
  if (snap && snap.meta.index > sm.appliedIndex()) sm.install(snap.data, snap.meta.index)
  return new RaftCore(settings.raft, persisted, sm.appliedIndex())
}

export const makeRaftNode = (settings: RaftNodeSettings) =>
  Effect.gen(function* () {
    const transport = yield* Transport
    const log = asRaftLog(settings.storage)
    const persisted = loadPersisted(settings, log)
    // The latest snapshot's image is a checkpoint of the state: recovery folds only what follows.
    const sm = new StateMachine(settings.journal, persisted.snapshot?.data)
    const core = openCore(settings, persisted, sm)
    if (log.note !== undefined) yield* Effect.logWarning(log.note).pipe(Effect.annotateLogs({ node: settings.raft.id }))
    const initial = core.status()
    const leadership = yield* SubscriptionRef.make<Leadership>({ role: initial.role, term: initial.term, leader: initial.leader })
    const appliedTo = new Set<Mailbox.Mailbox<AppliedEntry>>()
    // A Mailbox (an array swapped on each take), not a Queue: a Queue's linked list keeps the
    // removed node's link to the next, so once one node is promoted to the old generation every
    // later input (with its message or callback) stays reachable from it and is promoted too, until
    // a full collection: the young-generation collections then copied every input twice.
    const inbox = yield* Mailbox.make<Input>()
    const control = yield* Effect.serviceOption(TransportControl)
    // Production transports refuse faults: then the hot path never asks.
    const injectable = Option.isSome(control) && (yield* Effect.either(control.value.current()))._tag === "Right"
    const diskDelayMs =
      injectable && Option.isSome(control)
        ? control.value.current().pipe(Effect.map((f) => f.diskDelayMs), Effect.orElseSucceed(() => 0))
        : undefined
    const actor = new Actor(core, sm, log, settings, transport, leadership, appliedTo, yield* Effect.clock, diskDelayMs)
    actor.offerTick = () => void inbox.unsafeOffer({ _tag: "Tick" })
    yield* Effect.addFinalizer(() => Effect.sync(() => actor.stopWakeUp()))
    const annotate = <A, E, R>(eff: Effect.Effect<A, E, R>) =>
      Effect.annotateLogs(eff, { node: settings.raft.id })

    yield* inbox.takeAll.pipe(
      Effect.flatMap(([inputs]) =>
        inputs.length <= batchInputsMax
          ? actor.handleBatch(inputs)
          : Effect.forEach(Chunk.chunksOf(inputs, batchInputsMax), (batch) => actor.handleBatch(batch), { discard: true })),
      Effect.forever,
      // A defect (a store that cannot write, a bug) ends the actor: the node then acknowledges
      // nothing. Say so, and let the owner decide (a cluster_mgr process exits, so that its
      // supervisor restarts it; an embedding app is told through onActorDeath).
      Effect.onExit((exit) =>
        Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause)
          ? Effect.logError("the Raft actor stopped", exit.cause).pipe(
              Effect.zipRight(Effect.sync(() => settings.onActorDeath?.(exit.cause)))
            )
          : Effect.void
      ),
      annotate,
      Effect.forkScoped
    )
    // The first Tick starts the clock; each batch then arms the next wake-up (armWakeUp).
    inbox.unsafeOffer({ _tag: "Tick" })
    // Each read of a socket puts what it delivered in the inbox at once, so one batch takes all of it.
    yield* transport.deliverTo((inbound) => void inbox.unsafeOffer({ _tag: "Inbound", inbound }))

    // A caller's callback must not stop the actor (the operation itself is settled): one that
    // throws is logged through this node's logger.
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const guarded = <A>(onDone: (exit: Exit.Exit<A, RaftError>) => void) => (exit: Exit.Exit<A, RaftError>) => {
      try {
        onDone(exit)
      } catch (error) {
        runFork(annotate(Effect.logError("a submitNow callback threw", error)))
      }
    }

    const ask = <A>(make: (done: Deferred.Deferred<A, RaftError>) => Input) =>
      Effect.gen(function* () {
        const done = yield* Deferred.make<A, RaftError>()
        inbox.unsafeOffer(make(done))
        return yield* Deferred.await(done)
      })

    const api: RaftNodeApi = {
      id: settings.raft.id,
      submit: (command) => ask<AppliedEntry>((done) => ({ _tag: "Propose", data: encodeCommand(command), done })),
      submitNow: (command, onDone) => void inbox.unsafeOffer({ _tag: "Propose", data: encodeCommand(command), done: guarded(onDone) }),
      read: ask<ClusterState>((done) => ({ _tag: "Read", done })),
      localState: Effect.sync(() => sm.state),
      job: (state, jobId) => Effect.sync(() => Option.fromNullable(sm.job(state, jobId))),
      journalPage: (toSeq, limit) => Effect.sync(() => settings.journal.page(toSeq, limit)),
      historyIncomplete: Effect.sync(() => settings.journal.historyIncomplete()),
      changeMembership: (voters) => ask<ReadonlyArray<string>>((done) => ({ _tag: "Change", voters, done })),
      transferLeadership: (target) => ask<string>((done) => ({ _tag: "Transfer", target, done })),
      status: Effect.sync(() => core.status()),
      membershipNow: () => core.membership(),
      stateNow: () => sm.state,
      leadership,
      applied: Effect.acquireRelease(
        Effect.tap(Mailbox.make<AppliedEntry>(), (subscriber) => Effect.sync(() => appliedTo.add(subscriber))),
        (subscriber) => Effect.zipRight(Effect.sync(() => appliedTo.delete(subscriber)), subscriber.shutdown)
      )
    }
    return api
  })

export const layer = (settings: RaftNodeSettings): Layer.Layer<RaftNode, never, Transport> =>
  Layer.scoped(RaftNode, makeRaftNode(settings))

export const isLeader = (l: Leadership): boolean => l.role === "leader"
export const leaderOf = (l: Leadership): Option.Option<string> => Option.fromNullable(l.leader)
