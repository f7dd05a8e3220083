import { Effect, Layer, Ref } from "effect"
import type { Message } from "../domain/raft/messages.js"
import { InboundDelivery, Transport } from "./Transport.js"

/**
 * An in-process network for testing node actors together: each member's transport registers its
 * delivery on the hub, and sends are delivered straight to the receiver (its node, or its
 * mailbox when no node is attached), in order.
 * Partitions are controlled on the hub, for all members at once.
 */
export interface MemoryNetwork {
  /** Drops everything `from` sends to `to` (one way). */
  readonly cut: (from: string, to: string) => Effect.Effect<void>
  /** Members named in different sides cannot talk either way; unnamed members are unaffected. */
  readonly partition: (sides: ReadonlyArray<ReadonlyArray<string>>) => Effect.Effect<void>
  /** Cuts `node` off from every other member, both ways. */
  readonly isolate: (node: string) => Effect.Effect<void>
  /** Removes every cut, partition and isolation. */
  readonly heal: () => Effect.Effect<void>
  /** Delivers `message` if its link is open; false when the receiver has no transport registered. */
  readonly deliver: (message: Message) => Effect.Effect<boolean>
  readonly register: (node: string, delivery: InboundDelivery) => Effect.Effect<void>
  readonly unregister: (node: string, delivery: InboundDelivery) => Effect.Effect<void>
}

interface HubState {
  readonly deliveries: ReadonlyMap<string, InboundDelivery>
  readonly cuts: ReadonlySet<string>
  readonly isolated: ReadonlySet<string>
  readonly sideOf: ReadonlyMap<string, number>
}

const healthy = { cuts: new Set<string>(), isolated: new Set<string>(), sideOf: new Map<string, number>() }

const linkKey = (from: string, to: string) => `${from}\u0000${to}`

const isOpen = (state: HubState, from: string, to: string): boolean => {
  const fromSide = state.sideOf.get(from)
  const toSide = state.sideOf.get(to)
  const partitioned = fromSide !== undefined && toSide !== undefined && fromSide !== toSide
  return !partitioned && !state.cuts.has(linkKey(from, to)) && !state.isolated.has(from) && !state.isolated.has(to)
}

const sidesMap = (sides: ReadonlyArray<ReadonlyArray<string>>) =>
  new Map(sides.flatMap((side, index) => side.map((node) => [node, index] as const)))

const withDelivery = (state: HubState, node: string, delivery: InboundDelivery | undefined): HubState => {
  const deliveries = new Map(state.deliveries)
  if (delivery === undefined) deliveries.delete(node)
  else deliveries.set(node, delivery)
  return { ...state, deliveries }
}

/** A fresh hub with no members and no faults (an Effect value: `yield* MemoryNetwork.make`). */
const make: Effect.Effect<MemoryNetwork> = Effect.map(
  Ref.make<HubState>({ deliveries: new Map(), ...healthy }),
  (state): MemoryNetwork => ({
    cut: (from, to) => Ref.update(state, (s) => ({ ...s, cuts: new Set(s.cuts).add(linkKey(from, to)) })),
    partition: (sides) => Ref.update(state, (s) => ({ ...s, sideOf: sidesMap(sides) })),
    isolate: (node) => Ref.update(state, (s) => ({ ...s, isolated: new Set(s.isolated).add(node) })),
    heal: () => Ref.update(state, (s) => ({ ...s, ...healthy })),
    deliver: (message) =>
      Effect.flatMap(Ref.get(state), (s) => {
        const delivery = s.deliveries.get(message.to)
        if (delivery === undefined) return Effect.succeed(false)
        if (!isOpen(s, message.from, message.to)) return Effect.succeed(true)
        delivery.offer({ _tag: "Message", message })
        return Effect.succeed(true)
      }),
    register: (node, delivery) => Ref.update(state, (s) => withDelivery(s, node, delivery)),
    unregister: (node, delivery) =>
      Ref.update(state, (s) => (s.deliveries.get(node) === delivery ? withDelivery(s, node, undefined) : s))
  })
)

export const MemoryNetwork = { make }

/**
 * `self`'s transport on `network` for the layer's lifetime. A message to a member with no
 * transport is lost and reported as PeerDown once, until a message reaches it again; a cut link
 * loses messages silently, as a real partition does.
 */
const layer = (
  network: MemoryNetwork,
  self: string,
  options?: { readonly inboundCapacityMax?: number }
): Layer.Layer<Transport> =>
  Layer.scoped(
    Transport,
    Effect.gen(function*() {
      const delivery = yield* InboundDelivery.make(options?.inboundCapacityMax ?? 4096)
      yield* Effect.acquireRelease(network.register(self, delivery), () => network.unregister(self, delivery))
      const down = yield* Ref.make<ReadonlySet<string>>(new Set())
      const sendOne = (message: Message) =>
        Effect.flatMap(network.deliver(message), (delivered) => track(delivery, down, message.to, delivered))
      const send = (messages: ReadonlyArray<Message>) => Effect.forEach(messages, sendOne, { discard: true })
      return {
        send,
        sendNow: send,
        inbound: delivery.inbound,
        deliverTo: delivery.deliverTo,
        // In-process members have no HTTP API of their own to announce.
        peerHttp: () => noAddresses
      }
    })
  )

/** Records whether `peer` is reachable, reporting PeerDown on the transition to unreachable. */
const track = (delivery: InboundDelivery, down: Ref.Ref<ReadonlySet<string>>, peer: string, reached: boolean) =>
  Effect.flatMap(
    Ref.modify(down, (set): [boolean, ReadonlySet<string>] => {
      if (reached) return [false, set.has(peer) ? withoutPeer(set, peer) : set]
      return set.has(peer) ? [false, set] : [true, new Set(set).add(peer)]
    }),
    (wentDown) => (wentDown ? Effect.sync(() => delivery.offer({ _tag: "PeerDown", peer })) : Effect.void)
  )

const withoutPeer = (set: ReadonlySet<string>, peer: string): ReadonlySet<string> => {
  const next = new Set(set)
  next.delete(peer)
  return next
}

const noAddresses: ReadonlyMap<string, string> = new Map()

export const MemoryTransport = { layer }
