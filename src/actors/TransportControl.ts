import { Context, Data, Effect, Ref } from "effect"

/**
 * Faults a test injects into a transport, Jepsen style: messages to and from blocked peers are
 * dropped (a partition), messages to and from delayed peers are held back (a slow link); and into
 * the node's disk: its raft.db writes wait (a slow fsync).
 */
export interface Faults {
  /** Every peer is blocked, including peers first contacted later. */
  readonly blockedAll: boolean
  readonly blocked: ReadonlySet<string>
  readonly delaysMs: ReadonlyMap<string, number>
  /** A slow disk: every raft.db write of the node waits this long before it starts. */
  readonly diskDelayMs: number
}

export const noFaults: Faults = { blockedAll: false, blocked: new Set(), delaysMs: new Map(), diskDelayMs: 0 }

export const isBlocked = (faults: Faults, peer: string): boolean => faults.blockedAll || faults.blocked.has(peer)

export const delayMsOf = (faults: Faults, peer: string): number => faults.delaysMs.get(peer) ?? 0

/** The transport was built without `faultInjection: true`: production nodes refuse faults. */
export class FaultInjectionDisabled extends Data.TaggedError("FaultInjectionDisabled")<{}> {
  override get message(): string {
    return "fault injection is disabled on this transport"
  }
}

export interface TransportFaults {
  readonly block: (peer: string) => Effect.Effect<void, FaultInjectionDisabled>
  /** Undoes `block(peer)`; a peer stays blocked while `blockAll` holds. */
  readonly unblock: (peer: string) => Effect.Effect<void, FaultInjectionDisabled>
  readonly blockAll: () => Effect.Effect<void, FaultInjectionDisabled>
  /** Removes every fault: blocks and delays. */
  readonly heal: () => Effect.Effect<void, FaultInjectionDisabled>
  /** Holds messages to and from `peer` back by `ms`; 0 removes the delay. */
  readonly delayMs: (peer: string, ms: number) => Effect.Effect<void, FaultInjectionDisabled>
  /** Makes every raft.db write wait `ms` first (a slow fsync); 0 removes it. */
  readonly diskDelayMs: (ms: number) => Effect.Effect<void, FaultInjectionDisabled>
  /** What is injected now, for a status endpoint. */
  readonly current: () => Effect.Effect<Faults, FaultInjectionDisabled>
}

/** Fault injection into the transport, for tests only; every operation fails in production. */
export class TransportControl extends Context.Tag("cluster_mgr/TransportControl")<
  TransportControl,
  TransportFaults
>() {}

const withBlocked = (faults: Faults, peer: string, blocked: boolean): Faults => {
  const next = new Set(faults.blocked)
  if (blocked) next.add(peer)
  else next.delete(peer)
  return { ...faults, blocked: next }
}

const withDelay = (faults: Faults, peer: string, ms: number): Faults => {
  const next = new Map(faults.delaysMs)
  if (ms > 0) next.set(peer, ms)
  else next.delete(peer)
  return { ...faults, delaysMs: next }
}

/** The controls over `faults`, or, when injection is off (undefined), controls that refuse. */
export const makeControl = (faults: Ref.Ref<Faults> | undefined): TransportFaults => {
  if (faults === undefined) {
    const refuse = () => Effect.fail(new FaultInjectionDisabled())
    return { block: refuse, unblock: refuse, blockAll: refuse, heal: refuse, delayMs: refuse, diskDelayMs: refuse, current: refuse }
  }
  return {
    block: (peer) => Ref.update(faults, (f) => withBlocked(f, peer, true)),
    unblock: (peer) => Ref.update(faults, (f) => withBlocked(f, peer, false)),
    blockAll: () => Ref.update(faults, (f) => ({ ...f, blockedAll: true })),
    heal: () => Ref.set(faults, noFaults),
    delayMs: (peer, ms) => Ref.update(faults, (f) => withDelay(f, peer, ms)),
    diskDelayMs: (ms) => Ref.update(faults, (f) => ({ ...f, diskDelayMs: Math.max(0, ms) })),
    current: () => Ref.get(faults)
  }
}
