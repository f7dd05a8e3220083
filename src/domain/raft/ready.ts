import type { Message } from "./messages.js"
import type { Entry, HardState, Snapshot } from "./types.js"

/** Outcomes of leader-side operations the driver waits on (membership, transfer, reads). */
export type Notice =
  | { readonly _tag: "ConfChangeDone"; readonly id: string; readonly voters: ReadonlyArray<string> }
  | { readonly _tag: "ConfChangeFailed"; readonly id: string; readonly reason: string }
  | { readonly _tag: "TransferDone"; readonly id: string; readonly leader: string }
  | { readonly _tag: "TransferFailed"; readonly id: string; readonly reason: string }
  | { readonly _tag: "ReadReady"; readonly id: string; readonly index: number }
  | { readonly _tag: "ReadFailed"; readonly id: string; readonly reason: string }

/**
 * What the driver must do after feeding the core, in this order (etcd's Ready):
 * 1. send `messages` at once (the leader's appends go out in parallel with its own fsync);
 * 2. durably persist `snapshot` (replacing the log up to it), then `truncateFrom`/`entries`,
 *    then `hardState`, then `compactTo`; acknowledge with `core.persisted(...)`;
 * 3. send `messagesAfterPersist` (votes and append replies depend on what was just persisted);
 * 4. apply `snapshotToApply` then `committed` to the state machine, in order;
 * 5. if `snapshotDue` is set, take a snapshot at that applied index and hand it back with
 *    `core.snapshotTaken`.
 */
export interface Ready {
  readonly messages: Array<Message>
  readonly messagesAfterPersist: Array<Message>
  readonly hardState: HardState | undefined
  /** Delete every stored entry with index >= truncateFrom before appending `entries`. */
  readonly truncateFrom: number | undefined
  readonly entries: Array<Entry>
  /** A snapshot received from the leader, or one this node took: store it. */
  readonly snapshot: Snapshot | undefined
  /** Set when `snapshot` came from the leader: the state machine must load it. */
  readonly snapshotToApply: Snapshot | undefined
  /** Stored entries with index < compactTo may be deleted. */
  readonly compactTo: number | undefined
  readonly committed: Array<Entry>
  readonly snapshotDue: number | undefined
  readonly notices: Array<Notice>
}

export const isEmptyReady = (r: Ready): boolean =>
  r.messages.length === 0 &&
  r.messagesAfterPersist.length === 0 &&
  r.hardState === undefined &&
  r.truncateFrom === undefined &&
  r.entries.length === 0 &&
  r.snapshot === undefined &&
  r.compactTo === undefined &&
  r.committed.length === 0 &&
  r.snapshotDue === undefined &&
  r.notices.length === 0

/** Why a proposal or request was refused; the driver maps these to operator-facing errors. */
export type Refusal =
  | { readonly _tag: "NotLeader"; readonly leader: string | null }
  | { readonly _tag: "TransferInProgress"; readonly target: string }
  | { readonly _tag: "ChangeInProgress" }
  | { readonly _tag: "InvalidChange"; readonly reason: string }

export type ProposeResult =
  | { readonly _tag: "Accepted"; readonly firstIndex: number; readonly term: number }
  | Refusal

/** What a restarted node loads from its storage. */
export interface Persisted {
  readonly hardState: HardState
  readonly snapshot: Snapshot | undefined
  /** Entries after the snapshot, in order. */
  readonly entries: ReadonlyArray<Entry>
}

export type Role = "follower" | "precandidate" | "candidate" | "leader"

export interface PeerStatus {
  readonly peer: string
  readonly matchIndex: number
  readonly nextIndex: number
  readonly state: "probe" | "replicate" | "snapshot"
  readonly voter: boolean
  readonly ticksSinceContact: number
}

/**
 * Who this node is, its role and the group's voters: what a leader checks a raft mission against
 * on every Emit, without building `RaftStatus`'s peers.
 */
export interface RaftMembership {
  readonly id: string
  readonly role: Role
  readonly voters: ReadonlyArray<string>
  /** The old configuration's voters while a membership change is joint; empty otherwise. */
  readonly outgoing: ReadonlyArray<string>
}

export interface RaftStatus extends RaftMembership {
  readonly term: number
  readonly vote: string | null
  readonly leader: string | null
  readonly commitIndex: number
  readonly appliedIndex: number
  readonly lastIndex: number
  readonly firstIndex: number
  readonly learners: ReadonlyArray<string>
  /** New voters still catching up before a membership change (leader only). */
  readonly catchingUp: ReadonlyArray<string>
  readonly joint: boolean
  readonly transferTarget: string | null
  readonly peers: ReadonlyArray<PeerStatus>
}
