import { Context, type Effect, type Stream } from "effect"
import type { Message } from "../domain/raft/messages.js"

/** What the transport reports to the node: a message, or that a peer's connection closed. */
export type Inbound =
  | { readonly _tag: "Message"; readonly message: Message }
  | { readonly _tag: "PeerDown"; readonly peer: string }

/**
 * Carries Raft messages between members. `send` never blocks the caller on the network and never
 * fails: Raft tolerates loss, so a message to an unreachable peer is dropped (and reported as
 * PeerDown once). Implementations: TCP between processes, in-memory for tests.
 */
export class Transport extends Context.Tag("cluster_mgr/Transport")<
  Transport,
  {
    readonly send: (messages: ReadonlyArray<Message>) => Effect.Effect<void>
    readonly inbound: Stream.Stream<Inbound>
  }
>() {}
