import { RaftLog } from "./log.js"
import type { Message, MessageOf } from "./messages.js"
import type { RaftOptions } from "./options.js"
import { Prng } from "./prng.js"
import { Progress } from "./progress.js"
import { isJoint, isVoter, members, quorumActive, quorumValue, sameMembers, voteResult } from "./quorum.js"
import type { Notice, Persisted, ProposeResult, RaftMembership, RaftStatus, Ready, Refusal, Role } from "./ready.js"
import type { Configuration, Entry, EntryPayload, HardState, Snapshot } from "./types.js"

/** The persisted state of a brand-new member: its initial configuration as snapshot 0. */
export const bootstrapPersisted = (config: Configuration): Persisted => ({
  hardState: { term: 0, vote: null, commit: 0 },
  snapshot: { meta: { index: 0, term: 0, config }, data: "" },
  entries: []
})

interface CatchUp {
  readonly id: string
  readonly voters: ReadonlyArray<string>
  readonly peers: ReadonlyArray<string>
  readonly deadlineTick: number
}

interface Transfer {
  readonly id: string
  readonly target: string
  readonly startTick: number
  readonly deadlineTick: number
}

interface PendingRead {
  readonly id: string
  readonly index: number
  readonly round: number
}

interface IncomingSnapshot {
  readonly meta: Snapshot["meta"]
  readonly chunks: Array<string>
  received: number
}

/** A message without its envelope, which `send`/`reply` fill in. */
type MessageBody = Message extends infer M ? (M extends Message ? Omit<M, "group" | "from" | "to" | "term"> : never) : never

type Outbox = {
  messages: Array<Message>
  afterPersist: Array<Message>
  entries: Array<Entry>
  truncateFrom: number | undefined
  snapshot: Snapshot | undefined
  snapshotToApply: Snapshot | undefined
  compactTo: number | undefined
  notices: Array<Notice>
}

const emptyOutbox = (): Outbox => ({
  messages: [],
  afterPersist: [],
  entries: [],
  truncateFrom: undefined,
  snapshot: undefined,
  snapshotToApply: undefined,
  compactTo: undefined,
  notices: []
})

/**
 * The Raft core: a deterministic state machine with no I/O. Time arrives as `tick()`, the
 * network as `receive()`, durability as `persisted()`; everything the driver must do comes back
 * from `ready()`. It mutates itself in place (copying the log on every step would cost the hot
 * path dearly); determinism is what the simulator relies on, and it holds: the same inputs give
 * the same outputs.
 */
export class RaftCore {
  readonly id: string
  private readonly opts: RaftOptions
  private readonly prng: Prng
  private readonly log: RaftLog

  private term: number
  private vote: string | null
  private commit: number
  private applied: number
  private role: Role = "follower"
  private leader: string | null = null
  private config: Configuration
  private configIndex: number
  private snapshot: Snapshot

  private tickCount = 0
  private electionElapsed = 0
  private heartbeatElapsed = 0
  private randomizedTimeout = 0
  private lastSnapshotTick = 0
  private snapshotRequested = false
  private snapshotDueReported = false
  /** Last index known durable on this node. */
  private stableIndex: number

  private votes = new Map<string, boolean>()
  private progress = new Map<string, Progress>()
  private catchUp: CatchUp | undefined
  private pendingChange: { id: string; voters: ReadonlyArray<string> } | undefined
  private transfer: Transfer | undefined
  /** A transfer handed off by TimeoutNow: its outcome is known once the new leader is. */
  private handedOff: { id: string; target: string; deadlineTick: number } | undefined
  private reads: Array<PendingRead> = []
  private readsAwaitingCommit: Array<string> = []
  private hbRound = 0
  private readonly roundSentTick = new Map<number, number>()
  private readBroadcastPending = false
  private incoming: IncomingSnapshot | undefined
  /** The transport reported our leader's connection closed (see peerUnreachable). */
  private leaderLost = false
  /** Peers whose connection the transport reported closed, until we hear from them again. */
  private readonly unreachable = new Set<string>()
  /** Set once this leader sent TimeoutNow: its lease can no longer be trusted. */
  private leaseRevoked = false

  private out: Outbox = emptyOutbox()
  private lastHardState: HardState

  constructor(options: RaftOptions, persisted: Persisted, appliedIndex?: number) {
    this.opts = options
    this.id = options.id
    this.prng = new Prng(options.seed)
    const snap = persisted.snapshot ?? { meta: { index: 0, term: 0, config: emptyConfig }, data: "" }
    this.snapshot = snap
    this.log = new RaftLog(snap.meta.index, snap.meta.term, persisted.entries)
    this.term = persisted.hardState.term
    this.vote = persisted.hardState.vote
    this.applied = Math.max(appliedIndex ?? snap.meta.index, snap.meta.index)
    // What was applied was committed, even if the commit index itself was not yet persisted.
    this.commit = Math.min(Math.max(persisted.hardState.commit, snap.meta.index, this.applied), this.log.lastIndex())
    this.stableIndex = this.log.lastIndex()
    this.lastHardState = { ...persisted.hardState }
    const { config, index } = this.configAt(this.log.lastIndex())
    this.config = config
    this.configIndex = index
    this.resetElectionTimeout()
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    this.tickCount++
    if (this.role === "leader") this.tickLeader()
    else this.tickFollower()
    this.checkSnapshotDue()
  }

  /**
   * How many ticks may pass before one acts (a heartbeat, a timeout, a deadline, a snapshot by
   * time or size): never more, at least 1, at most an election timeout. A driver may sleep that
   * long and then give the ticks at once, instead of waking for every tick; any other input can
   * bring it nearer, so ask again after each. The simulator checks that the ticks before it do
   * nothing.
   */
  ticksUntilDue(): number {
    let due = this.opts.electionTicks
    const until = (tick: number) => {
      due = Math.min(due, tick - this.tickCount)
    }
    if (this.role === "leader") {
      due = Math.min(due, this.opts.heartbeatTicks - this.heartbeatElapsed, this.opts.electionTicks - this.electionElapsed)
      if (this.transfer) {
        until(this.transfer.deadlineTick)
        const pr = this.progress.get(this.transfer.target)
        if (pr) until(Math.max(pr.lastContactTick, this.transfer.startTick) + this.opts.electionTicks)
      }
      if (this.catchUp) until(this.catchUp.deadlineTick)
    } else {
      if (this.handedOff) until(this.handedOff.deadlineTick)
      if (this.promotable()) due = Math.min(due, this.randomizedTimeout - this.electionElapsed)
    }
    if (!this.snapshotRequested) {
      const since = this.applied - this.snapshot.meta.index
      if (this.opts.snapshotEntries > 0 && since >= this.opts.snapshotEntries) due = 1
      else if (this.opts.snapshotTicks > 0 && since > 0) until(this.lastSnapshotTick + this.opts.snapshotTicks)
    }
    return Math.max(1, due)
  }

  receive(m: Message): void {
    if (m.group !== this.opts.group || m.to !== this.id || m.from === this.id) return
    if (!this.admits(m)) return
    this.unreachable.delete(m.from)
    if (m.term > this.term) {
      if (!this.onHigherTerm(m)) return
    } else if (m.term < this.term) {
      this.onLowerTerm(m)
      return
    }
    this.dispatch(m)
  }

  propose(data: ReadonlyArray<string>): ProposeResult {
    const refusal = this.refuseProposal()
    if (refusal) return refusal
    const firstIndex = this.log.lastIndex() + 1
    this.appendOwn(data.map((d) => ({ _tag: "Command" as const, data: d })))
    return { _tag: "Accepted", firstIndex, term: this.term }
  }

  /**
   * Changes the voters to exactly `voters` by joint consensus. New voters first catch up as
   * non-voting members; the outcome arrives as a ConfChangeDone/Failed notice with `id`.
   */
  changeMembership(id: string, voters: ReadonlyArray<string>): Refusal | undefined {
    if (this.role !== "leader") return { _tag: "NotLeader", leader: this.leader }
    if (this.transfer) return { _tag: "TransferInProgress", target: this.transfer.target }
    if (this.changeInProgress()) return { _tag: "ChangeInProgress" }
    const target = [...new Set(voters)]
    if (target.length === 0) return { _tag: "InvalidChange", reason: "a configuration needs at least one voter" }
    if (sameMembers(target, this.config.voters)) {
      this.out.notices.push({ _tag: "ConfChangeDone", id, voters: this.config.voters })
      return undefined
    }
    const fresh = target.filter((p) => !this.config.voters.includes(p))
    for (const p of fresh) this.ensureProgress(p)
    this.catchUp = { id, voters: target, peers: fresh, deadlineTick: this.tickCount + this.opts.catchupTicks }
    for (const p of fresh) this.sendAppend(p)
    this.maybeFinishCatchUp()
    return undefined
  }

  /** Hands leadership to `target`; the outcome arrives as a TransferDone/Failed notice. */
  transferLeadership(id: string, target: string): Refusal | undefined {
    if (this.role !== "leader") return { _tag: "NotLeader", leader: this.leader }
    if (target === this.id) {
      this.out.notices.push({ _tag: "TransferDone", id, leader: this.id })
      return undefined
    }
    if (this.transfer) return { _tag: "TransferInProgress", target: this.transfer.target }
    if (this.changeInProgress()) return { _tag: "ChangeInProgress" }
    if (!this.config.voters.includes(target)) {
      return { _tag: "InvalidChange", reason: `${target} is not a voter of the group` }
    }
    if (this.unreachable.has(target)) return { _tag: "InvalidChange", reason: `${target} is unreachable` }
    this.transfer = { id, target, startTick: this.tickCount, deadlineTick: this.tickCount + this.opts.transferTicks }
    this.maybeSendTimeoutNow()
    if (this.transfer) this.sendAppend(target)
    return undefined
  }

  /** Linearizable read: a ReadReady notice gives the index the state machine must reach. */
  readIndex(id: string): Refusal | undefined {
    if (this.role !== "leader") return { _tag: "NotLeader", leader: this.leader }
    if (this.log.term(this.commit) !== this.term) {
      this.readsAwaitingCommit.push(id)
      return undefined
    }
    this.startRead(id)
    return undefined
  }

  /** The driver made entries up to `index` (of `term`) durable. */
  persisted(index: number, term: number): void {
    if (this.log.term(index) !== term || index <= this.stableIndex) return
    this.stableIndex = index
    if (this.role === "leader") {
      this.selfProgress().acknowledge(index)
      this.maybeCommit()
    }
  }

  /** The state machine's image at `index` (an applied index), as asked by `snapshotDue`. */
  snapshotTaken(index: number, data: string): void {
    this.snapshotRequested = false
    if (index <= this.snapshot.meta.index || index > this.applied) return
    const term = this.log.term(index)
    if (term === undefined) return
    this.snapshot = { meta: { index, term, config: this.configAt(index).config }, data }
    this.lastSnapshotTick = this.tickCount
    this.out.snapshot = this.snapshot
    this.out.compactTo = index + 1
    this.log.compactTo(Math.max(0, index - this.opts.logRetainEntries))
  }

  /**
   * The transport lost its connection to `peer`. A leader stops streaming to it until it
   * answers. A follower that lost its leader this way (its process died: the connection closed
   * at once) campaigns after a short random delay instead of a whole election timeout, and
   * grants pre-votes to others who lost it too. Partitions and pauses close no connection and
   * keep the ordinary timeouts; safety never depends on this signal.
   */
  peerUnreachable(peer: string): void {
    this.unreachable.add(peer)
    const pr = this.role === "leader" ? this.progress.get(peer) : undefined
    if (pr && pr.state === "replicate") pr.becomeProbe()
    if (this.transfer?.target === peer) this.abortTransfer("failed: the target is unreachable")
    if (this.role !== "follower" || peer !== this.leader || this.leaderLost) return
    this.leaderLost = true
    const delay = this.prng.int(Math.max(1, Math.floor(this.opts.electionTicks / 5)))
    this.electionElapsed = Math.max(this.electionElapsed, this.randomizedTimeout - 1 - delay)
  }

  hasReady(): boolean {
    return (
      this.out.messages.length > 0 ||
      this.out.afterPersist.length > 0 ||
      this.out.entries.length > 0 ||
      this.out.truncateFrom !== undefined ||
      this.out.snapshot !== undefined ||
      this.out.compactTo !== undefined ||
      this.out.notices.length > 0 ||
      this.commit > this.applied ||
      this.mustSync() ||
      (this.snapshotRequested && !this.snapshotDueReported)
    )
  }

  ready(): Ready {
    const out = this.out
    this.out = emptyOutbox()
    // A commit index alone is not worth an fsync (etcd's MustSync): it rides along with the next
    // write, and a restarted node relearns it from the leader or its applied index.
    const writes = out.entries.length > 0 || out.snapshot !== undefined || out.truncateFrom !== undefined
    const hardState = this.mustSync() || (writes && this.hardStateChanged()) ? this.currentHardState() : undefined
    if (hardState) this.lastHardState = hardState
    const committed = this.commit > this.applied ? this.log.slice(this.applied + 1, this.commit) : []
    this.applied = Math.max(this.applied, this.commit)
    const snapshotDue = this.snapshotRequested && !this.snapshotDueReported ? this.applied : undefined
    if (snapshotDue !== undefined) this.snapshotDueReported = true
    return {
      messages: out.messages,
      messagesAfterPersist: out.afterPersist,
      hardState,
      truncateFrom: out.truncateFrom,
      entries: out.entries,
      snapshot: out.snapshot,
      snapshotToApply: out.snapshotToApply,
      compactTo: out.compactTo,
      committed,
      snapshotDue,
      notices: out.notices
    }
  }

  status(): RaftStatus {
    const peers = [...this.progress.entries()]
      .filter(([p]) => p !== this.id)
      .map(([peer, pr]) => ({
        peer,
        matchIndex: pr.match,
        nextIndex: pr.next,
        state: pr.state,
        voter: isVoter(this.config, peer),
        ticksSinceContact: this.tickCount - pr.lastContactTick
      }))
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.leader,
      commitIndex: this.commit,
      appliedIndex: this.applied,
      lastIndex: this.log.lastIndex(),
      firstIndex: this.log.firstIndex(),
      voters: this.config.voters,
      outgoing: this.config.outgoing,
      learners: this.config.learners,
      catchingUp: this.catchUp?.peers ?? [],
      joint: isJoint(this.config),
      transferTarget: this.transfer?.target ?? null,
      peers: this.role === "leader" ? peers : []
    }
  }

  membership(): RaftMembership {
    return { id: this.id, role: this.role, voters: this.config.voters, outgoing: this.config.outgoing }
  }

  isLeader(): boolean {
    return this.role === "leader"
  }

  /** Role, term and leader alone: what the actor checks after every batch, without `status`'s peers. */
  leadership(): { readonly role: Role; readonly term: number; readonly leader: string | null } {
    return { role: this.role, term: this.term, leader: this.leader }
  }

  commitIndex(): number {
    return this.commit
  }

  /** The configuration in force (the newest one in the log, committed or not). */
  configuration(): Configuration {
    return this.config
  }

  /** Entry at `index` if still in memory (tests and tools). */
  entryAt(index: number): Entry | undefined {
    return this.log.entry(index)
  }

  // ---------------------------------------------------------------- time

  private tickFollower(): void {
    this.electionElapsed++
    if (this.handedOff && this.tickCount >= this.handedOff.deadlineTick) {
      this.out.notices.push({ _tag: "TransferFailed", id: this.handedOff.id, reason: "no new leader emerged" })
      this.handedOff = undefined
    }
    if (this.promotable() && this.electionElapsed >= this.randomizedTimeout) {
      this.electionElapsed = 0
      this.campaign(this.opts.preVote ? "pre" : "real", false)
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++
    this.electionElapsed++
    if (this.electionElapsed >= this.opts.electionTicks) {
      this.electionElapsed = 0
      if (this.opts.checkQuorum && !this.quorumRecentlyActive()) {
        this.becomeFollower(this.term, null)
        return
      }
    }
    if (this.transfer && this.tickCount >= this.transfer.deadlineTick) {
      this.abortTransfer(`timed out after ${this.opts.transferTicks} ticks`)
    } else if (this.transfer && this.silentFor(this.transfer.target, this.transfer.startTick) >= this.opts.electionTicks) {
      // A target silent for an election timeout (paused, partitioned) will not take over in
      // time; proposals are refused while a transfer runs, so give up now rather than later.
      this.abortTransfer("failed: the target has not answered for an election timeout")
    }
    if (this.catchUp && this.tickCount >= this.catchUp.deadlineTick) this.failCatchUp()
    if (this.heartbeatElapsed >= this.opts.heartbeatTicks) {
      this.heartbeatElapsed = 0
      this.broadcastHeartbeat()
      this.retrySnapshots()
    }
  }

  private checkSnapshotDue(): void {
    if (this.snapshotRequested) return
    const since = this.applied - this.snapshot.meta.index
    const byEntries = this.opts.snapshotEntries > 0 && since >= this.opts.snapshotEntries
    const byTime =
      this.opts.snapshotTicks > 0 && since > 0 && this.tickCount - this.lastSnapshotTick >= this.opts.snapshotTicks
    if (byEntries || byTime) {
      this.snapshotRequested = true
      this.snapshotDueReported = false
    }
  }

  private resetElectionTimeout(): void {
    this.randomizedTimeout = this.opts.electionTicks + this.prng.int(Math.max(1, this.opts.electionJitterTicks))
  }

  /**
   * A campaign left undecided (a split vote; a pre-vote a peer refused because it still heard the
   * leader a moment ago) is retried after a quarter of the election timeout (at least two
   * heartbeats), plus the jitter, rather than after a whole one: no leader is known here, and
   * pre-votes keep a retry from disturbing one elsewhere. Without pre-votes every retry bumps the
   * term and unseats whoever is winning (the simulator's seed 159 then elected no one for 200
   * ticks), so the whole timeout stays. Measured before (3 processes, the leader SIGSTOPped 15
   * times under load): 3 of 15 elections split, each costing a second election timeout (2.1 s
   * against 1.1 s). Only liveness depends on it.
   */
  private retryElectionTimeout(): void {
    if (!this.opts.preVote) return this.resetElectionTimeout()
    this.randomizedTimeout = this.retryTicks() + this.prng.int(Math.max(1, this.opts.electionJitterTicks))
  }

  private retryTicks(): number {
    const { electionTicks, heartbeatTicks } = this.opts
    return Math.min(electionTicks, Math.max(2 * heartbeatTicks, Math.ceil(electionTicks / 4)))
  }

  // ---------------------------------------------------------------- roles

  private becomeFollower(term: number, leader: string | null): void {
    const wasLeader = this.role === "leader"
    if (term > this.term) {
      this.term = term
      this.vote = null
    }
    this.role = "follower"
    this.setLeader(leader)
    this.electionElapsed = 0
    this.resetElectionTimeout()
    if (wasLeader) this.dropLeaderState("lost leadership")
  }

  private dropLeaderState(reason: string): void {
    if (this.transfer) {
      this.handedOff = { id: this.transfer.id, target: this.transfer.target, deadlineTick: this.tickCount + 2 * this.opts.electionTicks }
      this.transfer = undefined
    }
    if (this.catchUp) this.out.notices.push({ _tag: "ConfChangeFailed", id: this.catchUp.id, reason })
    if (this.pendingChange) this.out.notices.push({ _tag: "ConfChangeFailed", id: this.pendingChange.id, reason })
    for (const r of this.reads) this.out.notices.push({ _tag: "ReadFailed", id: r.id, reason })
    for (const id of this.readsAwaitingCommit) this.out.notices.push({ _tag: "ReadFailed", id, reason })
    this.catchUp = undefined
    this.pendingChange = undefined
    this.reads = []
    this.readsAwaitingCommit = []
    this.readBroadcastPending = false
    this.progress.clear()
  }

  private setLeader(leader: string | null): void {
    if (leader !== this.leader) this.leaderLost = false
    this.leader = leader
    if (leader !== null && this.handedOff) {
      const { id, target } = this.handedOff
      this.out.notices.push(
        leader === target
          ? { _tag: "TransferDone", id, leader }
          : { _tag: "TransferFailed", id, reason: `${leader} became leader instead of ${target}` }
      )
      this.handedOff = undefined
    }
  }

  private campaign(kind: "pre" | "real", transfer: boolean): void {
    this.votes = new Map([[this.id, true]])
    this.setLeader(null)
    this.retryElectionTimeout()
    if (kind === "pre") {
      this.role = "precandidate"
    } else {
      this.role = "candidate"
      this.term++
      this.vote = this.id
    }
    if (voteResult(this.config, this.votes) === "won") return this.onElectionWon()
    const term = kind === "pre" ? this.term + 1 : this.term
    const lastLogIndex = this.log.lastIndex()
    const lastLogTerm = this.log.lastTerm()
    for (const to of this.voterIds()) {
      if (to === this.id) continue
      const base = { group: this.opts.group, from: this.id, to, term, lastLogIndex, lastLogTerm }
      // A campaign's messages wait for its term and self-vote to be durable.
      this.out.afterPersist.push(
        kind === "pre" ? { _tag: "PreVote", ...base } : { _tag: "RequestVote", ...base, transfer }
      )
    }
  }

  private onElectionWon(): void {
    if (this.role === "precandidate") this.campaign("real", false)
    else this.becomeLeader()
  }

  private becomeLeader(): void {
    this.role = "leader"
    this.leaseRevoked = false
    this.setLeader(this.id)
    this.electionElapsed = 0
    this.heartbeatElapsed = 0
    this.progress.clear()
    // Heartbeat rounds count afresh in each term (acknowledgements of an earlier term are
    // dropped by term): a round left over from an earlier leadership would make the first reads
    // wait for the next periodic heartbeat instead of starting a round at once.
    this.hbRound = 0
    this.roundSentTick.clear()
    for (const p of members(this.config)) this.ensureProgress(p)
    this.ensureProgress(this.id)
    this.selfProgress().acknowledge(this.stableIndex)
    this.selfProgress().becomeReplicate()
    this.appendOwn([{ _tag: "Noop" }])
  }

  private promotable(): boolean {
    return isVoter(this.config, this.id)
  }

  private voterIds(): Array<string> {
    return [...new Set([...this.config.voters, ...this.config.outgoing])]
  }

  // ---------------------------------------------------------------- message admission

  /**
   * A node outside the configuration must not disturb the group: its votes and vote requests are
   * dropped before they can raise anyone's term. Appends, heartbeats, snapshots and TimeoutNow
   * come only from leaders, whose terms protect us; a node joining the group must accept them.
   */
  private admits(m: Message): boolean {
    switch (m._tag) {
      case "PreVote":
      case "RequestVote":
      case "PreVoteResp":
      case "RequestVoteResp":
        return isVoter(this.config, m.from)
      case "AppendEntriesResp":
      case "HeartbeatResp":
      case "InstallSnapshotResp":
        return this.progress.has(m.from) || members(this.config).includes(m.from)
      default:
        return true
    }
  }

  /** Returns whether the message should still be handled. */
  private onHigherTerm(m: Message): boolean {
    if (m._tag === "PreVote") return true
    if (m._tag === "PreVoteResp" && m.granted) return true
    if (m._tag === "RequestVote" && !m.transfer && this.inLease()) return false
    const fromLeader = m._tag === "AppendEntries" || m._tag === "Heartbeat" || m._tag === "InstallSnapshot"
    this.becomeFollower(m.term, fromLeader ? m.from : null)
    return true
  }

  private onLowerTerm(m: Message): void {
    if (m._tag === "AppendEntries" || m._tag === "Heartbeat") {
      // Tell a deposed leader that time has moved on, so it steps down.
      this.reply(m, { _tag: "HeartbeatResp", round: 0, lastIndex: this.log.lastIndex() })
    } else if (m._tag === "PreVote") {
      this.reply(m, { _tag: "PreVoteResp", granted: false })
    }
  }

  /** Heard from a live leader within the minimum election timeout. */
  private inLease(): boolean {
    // A restarted voter may have backed a lease it no longer remembers: with lease reads on, it
    // votes for nobody during its first election timeout.
    if (this.opts.leaseRead && this.opts.checkQuorum && this.tickCount < this.opts.electionTicks) return true
    return (
      this.opts.checkQuorum && this.leader !== null && !this.leaderLost && this.electionElapsed < this.opts.electionTicks
    )
  }

  private dispatch(m: Message): void {
    switch (m._tag) {
      case "PreVote":
        return this.onPreVote(m)
      case "RequestVote":
        return this.onRequestVote(m)
      case "PreVoteResp":
      case "RequestVoteResp":
        return this.onVoteResp(m)
      case "AppendEntries":
        this.followLeader(m.from)
        return this.onAppend(m)
      case "Heartbeat":
        this.followLeader(m.from)
        return this.onHeartbeat(m)
      case "InstallSnapshot":
        this.followLeader(m.from)
        return this.onInstallSnapshot(m)
      case "TimeoutNow":
        if (m.from === this.leader && this.promotable()) this.campaign("real", true)
        return
      case "AppendEntriesResp":
        return this.withProgress(m, (pr) => this.onAppendResp(m, pr))
      case "HeartbeatResp":
        return this.withProgress(m, (pr) => this.onHeartbeatResp(m, pr))
      case "InstallSnapshotResp":
        return this.withProgress(m, (pr) => this.onInstallSnapshotResp(m, pr))
    }
  }

  private followLeader(from: string): void {
    this.leaderLost = false
    if (this.role === "leader") throw new Error(`${this.id}: two leaders in term ${this.term}: ${from}`)
    if (this.role !== "follower") this.becomeFollower(this.term, from)
    else if (this.leader !== from) this.setLeader(from)
    this.electionElapsed = 0
  }

  private withProgress(m: Message, f: (pr: Progress) => void): void {
    if (this.role !== "leader") return
    const pr = this.progress.get(m.from)
    if (!pr) return
    pr.recentActive = true
    pr.lastContactTick = this.tickCount
    f(pr)
  }

  private reply(to: Message, body: MessageBody, after = true): void {
    const msg = { ...body, group: this.opts.group, from: this.id, to: to.from, term: this.term } as Message
    if (after) this.out.afterPersist.push(msg)
    else this.out.messages.push(msg)
  }

  private send(to: string, body: MessageBody): void {
    this.out.messages.push({ ...body, group: this.opts.group, from: this.id, to, term: this.term } as Message)
  }

  // ---------------------------------------------------------------- elections

  private onPreVote(m: MessageOf<"PreVote">): void {
    const granted =
      m.term > this.term && !this.inLease() && this.log.isUpToDate(m.lastLogIndex, m.lastLogTerm) && !this.outranks(m)
    const msg = {
      _tag: "PreVoteResp" as const,
      group: this.opts.group,
      from: this.id,
      to: m.from,
      term: granted ? m.term : this.term,
      granted
    }
    this.out.afterPersist.push(msg)
  }

  /**
   * Two followers of a lost leader time out within one jitter of each other, and a pre-vote waits
   * for a persist before it leaves: both often became pre-candidates before hearing of the other,
   * backed each other, and split the real vote (3 of 15 leader pauses, each costing a retry). Of
   * two pre-candidates with equal logs only the one with the lower id is backed, so one goes on
   * and the other votes for it. Pre-votes decide nothing: only liveness depends on this.
   */
  private outranks(m: MessageOf<"PreVote">): boolean {
    return (
      this.role === "precandidate" &&
      m.lastLogIndex === this.log.lastIndex() &&
      m.lastLogTerm === this.log.lastTerm() &&
      this.id < m.from
    )
  }

  private onRequestVote(m: MessageOf<"RequestVote">): void {
    const canVote = this.vote === null || this.vote === m.from
    const granted =
      this.role === "follower" && canVote && this.log.isUpToDate(m.lastLogIndex, m.lastLogTerm)
    if (granted) {
      this.vote = m.from
      this.electionElapsed = 0
    }
    this.reply(m, { _tag: "RequestVoteResp", granted })
  }

  private onVoteResp(m: MessageOf<"PreVoteResp"> | MessageOf<"RequestVoteResp">): void {
    const expected = m._tag === "PreVoteResp" ? "precandidate" : "candidate"
    if (this.role !== expected) return
    if (m._tag === "PreVoteResp" && m.granted && m.term !== this.term + 1) return
    this.votes.set(m.from, m.granted)
    const result = voteResult(this.config, this.votes)
    if (result === "won") this.onElectionWon()
    else if (result === "lost") this.becomeFollower(this.term, null)
  }

  // ---------------------------------------------------------------- follower: log

  private onAppend(m: MessageOf<"AppendEntries">): void {
    let prevIndex = m.prevLogIndex
    let prevTerm = m.prevLogTerm
    let entries: ReadonlyArray<Entry> = m.entries
    if (prevIndex < this.commit) {
      // Our committed prefix matches any leader's; only what lies beyond it needs checking.
      entries = entries.filter((e) => e.index > this.commit)
      prevIndex = this.commit
      prevTerm = this.log.term(this.commit)!
      if (m.prevLogIndex + m.entries.length <= this.commit) {
        return this.reply(m, appendOk(this.commit))
      }
    }
    if (this.log.term(prevIndex) !== prevTerm) return this.rejectAppend(m, prevIndex)
    const lastNew = prevIndex + entries.length
    this.appendFromLeader(entries)
    this.advanceCommit(Math.min(m.commit, lastNew))
    this.reply(m, appendOk(lastNew))
  }

  private rejectAppend(m: MessageOf<"AppendEntries">, prevIndex: number): void {
    const last = this.log.lastIndex()
    const hint =
      prevIndex > last
        ? { conflictTerm: 0, conflictIndex: last + 1 }
        : { conflictTerm: this.log.term(prevIndex)!, conflictIndex: this.log.firstIndexOfTermRun(prevIndex) }
    this.reply(m, {
      _tag: "AppendEntriesResp",
      success: false,
      matchIndex: 0,
      rejectedIndex: m.prevLogIndex,
      ...hint
    })
  }

  /** Appends the leader's entries after the matching prefix, truncating only a real conflict. */
  private appendFromLeader(entries: ReadonlyArray<Entry>): void {
    let i = 0
    while (i < entries.length && this.log.term(entries[i].index) === entries[i].term) i++
    if (i === entries.length) return
    const fresh = entries.slice(i)
    const from = fresh[0].index
    if (from <= this.log.lastIndex()) {
      if (from <= this.commit) throw new Error(`${this.id}: conflict at committed index ${from}`)
      this.truncate(from)
    }
    this.appendEntries(fresh)
  }

  private truncate(from: number): void {
    this.log.truncateFrom(from)
    this.stableIndex = Math.min(this.stableIndex, from - 1)
    this.out.truncateFrom = Math.min(this.out.truncateFrom ?? Infinity, from)
    this.out.entries = this.out.entries.filter((e) => e.index < from)
    if (this.configIndex >= from) {
      const { config, index } = this.configAt(from - 1)
      this.config = config
      this.configIndex = index
    }
  }

  private appendEntries(entries: ReadonlyArray<Entry>): void {
    this.log.append(entries)
    for (const e of entries) {
      this.out.entries.push(e)
      if (e.payload._tag === "Config") {
        this.config = e.payload.config
        this.configIndex = e.index
      }
    }
  }

  private advanceCommit(to: number): void {
    if (to > this.commit) this.commit = Math.min(to, this.log.lastIndex())
  }

  private onHeartbeat(m: MessageOf<"Heartbeat">): void {
    this.advanceCommit(m.commit)
    this.reply(m, { _tag: "HeartbeatResp", round: m.round, lastIndex: this.log.lastIndex() }, false)
  }

  private onInstallSnapshot(m: MessageOf<"InstallSnapshot">): void {
    const respond = (nextOffset: number, installed: boolean) =>
      this.reply(m, { _tag: "InstallSnapshotResp", index: m.meta.index, nextOffset, installed })
    if (m.meta.index <= this.commit) return respond(0, true)
    const sameImage = this.incoming?.meta.index === m.meta.index && this.incoming?.meta.term === m.meta.term
    if (m.offset === 0 && !sameImage) {
      this.incoming = { meta: m.meta, chunks: [], received: 0 }
    }
    const inc = this.incoming
    if (!inc || inc.meta.index !== m.meta.index || inc.meta.term !== m.meta.term || m.offset !== inc.received) {
      return respond(inc && inc.meta.index === m.meta.index ? inc.received : 0, false)
    }
    inc.chunks.push(m.data)
    inc.received += m.data.length
    if (!m.done) return respond(inc.received, false)
    this.incoming = undefined
    this.installSnapshot({ meta: inc.meta, data: inc.chunks.join("") })
    respond(inc.received, true)
  }

  private installSnapshot(snap: Snapshot): void {
    const { index, term } = snap.meta
    if (this.log.restore(index, term) === "discarded") {
      this.out.truncateFrom = Math.min(this.out.truncateFrom ?? Infinity, index + 1)
      this.out.entries = []
      this.stableIndex = index
    } else {
      this.out.entries = this.out.entries.filter((e) => e.index > index)
      this.stableIndex = Math.max(this.stableIndex, index)
    }
    this.snapshot = snap
    this.out.snapshot = snap
    this.out.snapshotToApply = snap
    this.commit = Math.max(this.commit, index)
    this.applied = index
    this.lastSnapshotTick = this.tickCount
    const { config, index: ci } = this.configAt(this.log.lastIndex())
    this.config = config
    this.configIndex = ci
  }

  // ---------------------------------------------------------------- leader: replication

  private refuseProposal(): Refusal | undefined {
    if (this.role !== "leader") return { _tag: "NotLeader", leader: this.leader }
    if (this.transfer) return { _tag: "TransferInProgress", target: this.transfer.target }
    return undefined
  }

  private appendOwn(payloads: ReadonlyArray<EntryPayload>): void {
    const first = this.log.lastIndex() + 1
    const entries = payloads.map((payload, i) => ({ index: first + i, term: this.term, payload }))
    this.appendEntries(entries)
    if (payloads.some((p) => p._tag === "Config")) this.syncProgressWithConfig()
    for (const p of this.progress.keys()) if (p !== this.id) this.sendAppendLoop(p)
    this.maybeCommit()
  }

  private ensureProgress(peer: string): Progress {
    let pr = this.progress.get(peer)
    if (!pr) {
      pr = new Progress(this.log.lastIndex() + 1, this.opts.maxInflightAppends)
      pr.lastContactTick = this.tickCount
      pr.lastProgressTick = this.tickCount
      pr.recentActive = true
      this.progress.set(peer, pr)
    }
    return pr
  }

  private selfProgress(): Progress {
    return this.ensureProgress(this.id)
  }

  /** Tracks every member of the configuration and the peers catching up; forgets the rest. */
  private syncProgressWithConfig(): void {
    const keep = new Set([...members(this.config), ...(this.catchUp?.peers ?? []), this.id])
    for (const p of keep) this.ensureProgress(p)
    for (const p of [...this.progress.keys()]) if (!keep.has(p)) this.progress.delete(p)
  }

  private sendAppendLoop(peer: string): void {
    const pr = this.progress.get(peer)
    if (!pr) return
    do {
      if (!this.sendAppend(peer)) return
    } while (pr.state === "replicate" && pr.next <= this.log.lastIndex() && pr.canSend())
  }

  /** Sends one append (or starts a snapshot) to `peer`; false when nothing was sent. */
  private sendAppend(peer: string, allowEmpty = false): boolean {
    const pr = this.progress.get(peer)
    if (!pr || peer === this.id || !pr.canSend()) return false
    const prevLogIndex = pr.next - 1
    const prevLogTerm = this.log.term(prevLogIndex)
    if (prevLogTerm === undefined) return this.startSnapshot(peer, pr)
    const entries = this.log.slice(pr.next, Infinity, this.opts.maxEntriesPerAppend, this.opts.maxBytesPerAppend)
    if (entries.length === 0 && pr.state === "replicate" && !allowEmpty) return false
    this.send(peer, { _tag: "AppendEntries", prevLogIndex, prevLogTerm, entries, commit: this.commit })
    // Silence is measured from the oldest outstanding append.
    if (pr.match >= pr.next - 1) pr.lastProgressTick = this.tickCount
    pr.sent(prevLogIndex + entries.length, entries.length > 0)
    return true
  }

  private onAppendResp(m: MessageOf<"AppendEntriesResp">, pr: Progress): void {
    if (!m.success) {
      const hint = this.conflictHint(m)
      if (pr.decreaseTo(m.rejectedIndex, hint)) this.sendAppend(m.from)
      return
    }
    const advanced = pr.acknowledge(m.matchIndex)
    if (advanced) pr.lastProgressTick = this.tickCount
    if (pr.state === "snapshot" && pr.match >= pr.snapshot!.index) pr.becomeProbe()
    if (pr.state === "probe" && pr.match >= pr.next - 1) pr.becomeReplicate()
    else if (pr.state === "probe") pr.paused = false
    if (advanced) {
      this.maybeCommit()
      if (this.role !== "leader") return
      this.maybeFinishCatchUp()
      this.maybeSendTimeoutNow()
    }
    this.sendAppendLoop(m.from)
  }

  /** Where the leader should retry after a rejection, skipping whole terms (fast back-off). */
  private conflictHint(m: MessageOf<"AppendEntriesResp">): number {
    if (m.conflictTerm === 0) return m.conflictIndex
    const last = this.log.lastIndexOfTerm(m.conflictTerm, m.rejectedIndex)
    return last !== undefined ? last + 1 : m.conflictIndex
  }

  private onHeartbeatResp(m: MessageOf<"HeartbeatResp">, pr: Progress): void {
    pr.ackedRound = Math.max(pr.ackedRound, m.round)
    if (pr.state === "probe") pr.paused = false
    const stalled = this.tickCount - pr.lastProgressTick >= Math.max(2, this.opts.electionTicks >> 1)
    if (pr.state === "replicate" && stalled && m.lastIndex < pr.next - 1) {
      // No acknowledgement for a while, and the follower lacks what we sent: an append was lost. Probe again from what it has instead of waiting forever.
      pr.becomeProbe()
      pr.next = Math.max(pr.match + 1, m.lastIndex + 1)
    } else if (pr.state === "replicate" && stalled && pr.match < pr.next - 1) {
      // It may hold everything sent while its acknowledgements were lost: ask it again with an
      // append that needs no window slot (etcd frees in-flight slots on heartbeat replies too).
      pr.inflight = []
      this.sendAppend(m.from, true)
    }
    if (pr.state !== "snapshot" && pr.match < this.log.lastIndex()) this.sendAppend(m.from)
    if (this.transfer?.target === m.from) this.maybeSendTimeoutNow()
    this.resolveReads()
  }

  private maybeCommit(): void {
    if (this.role !== "leader") return
    const q = quorumValue(this.config, (id) => this.progress.get(id)?.match ?? 0)
    if (q <= this.commit || this.log.term(q) !== this.term) return
    this.commit = q
    this.onCommitAdvanced()
  }

  private onCommitAdvanced(): void {
    if (this.readsAwaitingCommit.length > 0 && this.log.term(this.commit) === this.term) {
      const waiting = this.readsAwaitingCommit
      this.readsAwaitingCommit = []
      for (const id of waiting) this.startRead(id)
    }
    if (this.configIndex > this.commit) return
    if (isJoint(this.config)) {
      // Leave the joint configuration as soon as it is committed (also after a leader change).
      this.appendOwn([{ _tag: "Config", config: { ...this.config, outgoing: [] } }])
      return
    }
    if (this.pendingChange) {
      this.out.notices.push({ _tag: "ConfChangeDone", id: this.pendingChange.id, voters: this.config.voters })
      this.pendingChange = undefined
    }
    if (!this.config.voters.includes(this.id)) this.stepDownRemoved()
  }

  /** A leader removed from the group hands over at once to its most caught-up voter. */
  private stepDownRemoved(): void {
    let best: string | undefined
    for (const v of this.config.voters) {
      const pr = this.progress.get(v)
      if (pr && (!best || pr.match > this.progress.get(best)!.match)) best = v
    }
    if (best && this.progress.get(best)!.match === this.log.lastIndex()) this.send(best, { _tag: "TimeoutNow" })
    this.becomeFollower(this.term, null)
  }

  private changeInProgress(): boolean {
    return this.catchUp !== undefined || this.pendingChange !== undefined || this.configIndex > this.commit || isJoint(this.config)
  }

  private maybeFinishCatchUp(): void {
    const cu = this.catchUp
    if (!cu) return
    const last = this.log.lastIndex()
    if (cu.peers.some((p) => this.lagging(p, last))) return
    this.catchUp = undefined
    this.pendingChange = { id: cu.id, voters: cu.voters }
    const config: Configuration = {
      voters: cu.voters,
      outgoing: this.config.voters,
      learners: this.config.learners.filter((l) => !cu.voters.includes(l))
    }
    this.appendOwn([{ _tag: "Config", config }])
  }

  /** A peer that never answered is lagging however short the log is. */
  private lagging(peer: string, last: number): boolean {
    const match = this.progress.get(peer)?.match ?? 0
    return match === 0 || match + this.opts.catchupMarginEntries < last
  }

  private failCatchUp(): void {
    const cu = this.catchUp!
    const last = this.log.lastIndex()
    const lagging = cu.peers
      .filter((p) => this.lagging(p, last))
      .map((p) => `${p} (at ${this.progress.get(p)?.match ?? 0} of ${last})`)
    this.catchUp = undefined
    this.syncProgressWithConfig()
    this.out.notices.push({
      _tag: "ConfChangeFailed",
      id: cu.id,
      reason: `did not catch up within ${this.opts.catchupTicks} ticks: ${lagging.join(", ")}`
    })
  }

  // ---------------------------------------------------------------- leader: transfer

  private maybeSendTimeoutNow(): void {
    const t = this.transfer
    if (!t) return
    const pr = this.progress.get(t.target)
    if (!pr || pr.match !== this.log.lastIndex()) return
    // The target will campaign over the voters' leases: ours is void from here on.
    this.leaseRevoked = true
    this.send(t.target, { _tag: "TimeoutNow" })
  }

  /** Ticks since `peer` last answered this leader, counted from `since` at the earliest. */
  private silentFor(peer: string, since: number): number {
    const pr = this.progress.get(peer)
    return pr === undefined ? 0 : this.tickCount - Math.max(pr.lastContactTick, since)
  }

  private abortTransfer(reason: string): void {
    const t = this.transfer!
    this.transfer = undefined
    this.out.notices.push({
      _tag: "TransferFailed",
      id: t.id,
      reason: `transfer to ${t.target} ${reason}`
    })
  }

  // ---------------------------------------------------------------- leader: heartbeats, reads

  private broadcastHeartbeat(): void {
    this.hbRound++
    this.roundSentTick.set(this.hbRound, this.tickCount)
    this.selfProgress().ackedRound = this.hbRound
    this.readBroadcastPending = false
    for (const [peer, pr] of this.progress) {
      if (peer === this.id) continue
      this.send(peer, { _tag: "Heartbeat", commit: Math.min(pr.match, this.commit), round: this.hbRound })
    }
    this.resolveReads()
  }

  private quorumRecentlyActive(): boolean {
    const ok = quorumActive(this.config, (id) => id === this.id || (this.progress.get(id)?.recentActive ?? false))
    for (const [id, pr] of this.progress) if (id !== this.id) pr.recentActive = false
    return ok
  }

  private quorumAckedRound(): number {
    return quorumValue(this.config, (id) => this.progress.get(id)?.ackedRound ?? 0)
  }

  private startRead(id: string): void {
    if (this.voterIds().length === 1 || (this.opts.leaseRead && this.leaseValid())) {
      this.out.notices.push({ _tag: "ReadReady", id, index: this.commit })
      return
    }
    this.reads.push({ id, index: this.commit, round: this.hbRound + 1 })
    if (this.quorumAckedRound() >= this.hbRound) this.broadcastHeartbeat()
    else this.readBroadcastPending = true
  }

  private resolveReads(): void {
    const q = this.quorumAckedRound()
    if (this.reads.length > 0) {
      const ready = this.reads.filter((r) => r.round <= q)
      this.reads = this.reads.filter((r) => r.round > q)
      for (const r of ready) this.out.notices.push({ _tag: "ReadReady", id: r.id, index: r.index })
    }
    for (const round of this.roundSentTick.keys()) if (round < q) this.roundSentTick.delete(round)
    if (this.readBroadcastPending && q >= this.hbRound) this.broadcastHeartbeat()
  }

  /**
   * A lease holds while a quorum acknowledged a heartbeat sent less than one minimum election
   * timeout ago: with CheckQuorum, none of them will vote for another leader before that.
   */
  private leaseValid(): boolean {
    if (!this.opts.checkQuorum || this.leaseRevoked) return false
    const sentAt = this.roundSentTick.get(this.quorumAckedRound())
    return sentAt !== undefined && this.tickCount < sentAt + this.opts.electionTicks - 1
  }

  // ---------------------------------------------------------------- leader: snapshots

  private startSnapshot(peer: string, pr: Progress): boolean {
    pr.becomeSnapshot(this.snapshot.meta.index, this.tickCount)
    this.sendSnapshotChunks(peer, pr)
    return true
  }

  private sendSnapshotChunks(peer: string, pr: Progress): void {
    const t = pr.snapshot!
    const data = this.snapshot.data
    const chunk = this.opts.snapshotChunkBytes
    while (!t.sentAll && t.sent - t.acked < chunk * this.opts.maxInflightSnapshotChunks) {
      const piece = data.slice(t.sent, t.sent + chunk)
      const done = t.sent + piece.length >= data.length
      this.send(peer, { _tag: "InstallSnapshot", meta: this.snapshot.meta, offset: t.sent, data: piece, done })
      t.sent += piece.length
      t.sentAll = done
      t.lastSendTick = this.tickCount
    }
  }

  private onInstallSnapshotResp(m: MessageOf<"InstallSnapshotResp">, pr: Progress): void {
    const t = pr.snapshot
    if (pr.state !== "snapshot" || !t || m.index !== t.index) return
    if (m.installed) {
      pr.acknowledge(m.index)
      pr.becomeProbe()
      this.maybeCommit()
      if (this.role !== "leader") return
      this.maybeFinishCatchUp()
      this.sendAppend(m.from)
      return
    }
    if (m.nextOffset < t.acked) {
      // The follower lost what it had received (it restarted): start over where it stands.
      t.sent = m.nextOffset
      t.sentAll = false
    }
    // Chunks in flight make replies lag behind `sent`; lost chunks are resent by retrySnapshots.
    t.acked = m.nextOffset
    this.sendSnapshotChunks(m.from, pr)
  }

  /** Resends unacknowledged chunks that went unanswered, and restarts stale transfers. */
  private retrySnapshots(): void {
    for (const [peer, pr] of this.progress) {
      const t = pr.snapshot
      if (pr.state !== "snapshot" || !t) continue
      if (t.index !== this.snapshot.meta.index) {
        this.startSnapshot(peer, pr)
      } else if (this.tickCount - t.lastSendTick >= this.opts.electionTicks) {
        t.sent = t.acked
        t.sentAll = false
        this.sendSnapshotChunks(peer, pr)
      }
    }
  }

  // ---------------------------------------------------------------- helpers

  /** The configuration in force at `index` and the index of the entry that set it. */
  private configAt(index: number): { config: Configuration; index: number } {
    const e = this.log.lastConfigEntry(this.snapshot.meta.index, index)
    if (e && e.payload._tag === "Config") return { config: e.payload.config, index: e.index }
    return { config: this.snapshot.meta.config, index: this.snapshot.meta.index }
  }

  private currentHardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.commit }
  }

  private mustSync(): boolean {
    return this.lastHardState.term !== this.term || this.lastHardState.vote !== this.vote
  }

  private hardStateChanged(): boolean {
    const h = this.lastHardState
    return h.term !== this.term || h.vote !== this.vote || h.commit !== this.commit
  }
}

const emptyConfig: Configuration = { voters: [], outgoing: [], learners: [] }

const appendOk = (matchIndex: number) => ({
  _tag: "AppendEntriesResp" as const,
  success: true,
  matchIndex,
  rejectedIndex: 0,
  conflictTerm: 0,
  conflictIndex: 0
})
