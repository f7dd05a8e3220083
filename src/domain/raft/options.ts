/**
 * Tunables of the Raft core, all in ticks or counts: the core never reads a clock, so the
 * driver decides how long a tick is (tickMs in the node config).
 */
export interface RaftOptions {
  readonly group: string
  readonly id: string
  /** Election timeout is drawn uniformly from [electionTicks, electionTicks + electionJitterTicks). */
  readonly electionTicks: number
  /**
   * Width of the election timeout's random range. Raft's classic choice is electionTicks (up to
   * 2x); a narrower range bounds failover after a pause or partition by electionTicks + jitter,
   * at the price of more split votes when the range holds few ticks.
   */
  readonly electionJitterTicks: number
  readonly heartbeatTicks: number
  readonly preVote: boolean
  readonly checkQuorum: boolean
  /** Serve reads from the leader lease (needs checkQuorum) instead of a heartbeat round. */
  readonly leaseRead: boolean
  readonly maxEntriesPerAppend: number
  readonly maxBytesPerAppend: number
  readonly maxInflightAppends: number
  readonly snapshotChunkBytes: number
  readonly maxInflightSnapshotChunks: number
  /** A snapshot is due once this many entries were applied since the last one (0: never). */
  readonly snapshotEntries: number
  /** ...or this many ticks passed with something applied since the last one (0: never). */
  readonly snapshotTicks: number
  /** Entries kept below a snapshot so slightly lagging followers need no snapshot. */
  readonly logRetainEntries: number
  /** A new voter must catch up within this many ticks, else the membership change fails. */
  readonly catchupTicks: number
  /** A peer is caught up when it lags the leader by at most this many entries. */
  readonly catchupMarginEntries: number
  /** A leadership transfer must finish within this many ticks, else it is aborted. */
  readonly transferTicks: number
  /** Seed of the core's own PRNG (election jitter); distinct per node. */
  readonly seed: number
}

/**
 * A restart folds the journal from the latest snapshot's image, so the interval bounds its
 * replay: at 10000 a restart with 100k jobs folded up to 20k events (1.1-1.4 s on the 2-core VM).
 */
export const defaultSnapshotEntries = 2_000
/**
 * etcd keeps as many (--snapshot-catchup-entries): with snapshots every 2000 entries, 1000 left a
 * follower down for a second or two under load to a snapshot, after which it copies the whole job
 * history back (HistoryBackfill).
 */
export const defaultLogRetainEntries = 5_000

export const defaultRaftOptions = (group: string, id: string, seed: number): RaftOptions => ({
  group,
  id,
  electionTicks: 10,
  electionJitterTicks: 10,
  heartbeatTicks: 1,
  preVote: true,
  checkQuorum: true,
  leaseRead: false,
  maxEntriesPerAppend: 512,
  maxBytesPerAppend: 1 << 20,
  maxInflightAppends: 64,
  snapshotChunkBytes: 256 * 1024,
  maxInflightSnapshotChunks: 8,
  snapshotEntries: defaultSnapshotEntries,
  snapshotTicks: 0,
  logRetainEntries: defaultLogRetainEntries,
  catchupTicks: 100,
  catchupMarginEntries: 16,
  transferTicks: 20,
  seed
})
