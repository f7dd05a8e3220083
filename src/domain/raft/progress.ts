/**
 * The leader's view of one peer's replication (etcd's Progress):
 * - probe: one append in flight at a time until the peer's position is known;
 * - replicate: appends pipelined optimistically, at most `maxInflight` unacknowledged;
 * - snapshot: the peer is far behind and receives the snapshot in chunks.
 */
export type ProgressState = "probe" | "replicate" | "snapshot"

export interface SnapshotTransfer {
  readonly index: number
  /** Bytes the follower confirmed. */
  acked: number
  /** Bytes sent so far (may run ahead of `acked` by the chunk window). */
  sent: number
  sentAll: boolean
  lastSendTick: number
}

export class Progress {
  match = 0
  next: number
  state: ProgressState = "probe"
  /** Probe state: an append is outstanding, wait for its answer or a heartbeat reply. */
  paused = false
  /** Last index of each append in flight (replicate state), oldest first. */
  inflight: Array<number> = []
  /** Heard from since the last CheckQuorum round. */
  recentActive = false
  lastContactTick = 0
  /** When `match` last advanced: a long silence while appends are outstanding means loss. */
  lastProgressTick = 0
  /** Highest heartbeat round this peer echoed (ReadIndex and lease). */
  ackedRound = 0
  snapshot: SnapshotTransfer | undefined = undefined

  constructor(next: number, readonly maxInflight: number) {
    this.next = next
  }

  becomeProbe(): void {
    this.state = "probe"
    this.next = Math.max(this.next, this.match + 1)
    this.paused = false
    this.inflight = []
    this.snapshot = undefined
  }

  becomeReplicate(): void {
    this.state = "replicate"
    this.next = this.match + 1
    this.paused = false
    this.inflight = []
    this.snapshot = undefined
  }

  becomeSnapshot(index: number, tick: number): void {
    this.state = "snapshot"
    this.inflight = []
    this.snapshot = { index, acked: 0, sent: 0, sentAll: false, lastSendTick: tick }
  }

  /** Records an acknowledged match; false when the reply was stale. */
  acknowledge(match: number): boolean {
    this.inflight = this.inflight.filter((i) => i > match)
    if (match <= this.match) return false
    this.match = match
    this.next = Math.max(this.next, match + 1)
    return true
  }

  canSend(): boolean {
    if (this.state === "probe") return !this.paused
    if (this.state === "replicate") return this.inflight.length < this.maxInflight
    return false
  }

  /** Notes an append covering up to `last` was sent. */
  sent(last: number, carriesEntries: boolean): void {
    if (this.state === "probe") this.paused = true
    else if (this.state === "replicate" && carriesEntries) {
      this.next = last + 1
      this.inflight.push(last)
    }
  }

  /**
   * A rejection for `rejected` (the prevLogIndex tried) with the follower's hint `hint` (the
   * next index to try). False when the rejection is stale.
   */
  decreaseTo(rejected: number, hint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false
      this.next = Math.max(this.match + 1, Math.min(hint, rejected))
      this.becomeProbe()
      return true
    }
    if (this.next - 1 !== rejected) return false
    this.next = Math.max(this.match + 1, Math.min(hint, rejected))
    this.paused = false
    return true
  }
}
