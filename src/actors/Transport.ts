import { Context, Effect, Mailbox, type Scope, type Stream } from "effect"
import type { Message } from "../domain/raft/messages.js"

/** What the transport reports to the node: a message, or that a peer's connection closed. */
export type Inbound =
  | { readonly _tag: "Message"; readonly message: Message }
  | { readonly _tag: "PeerDown"; readonly peer: string }

/**
 * Carries Raft messages between members. `send` never blocks the caller on the network and never
 * fails: Raft tolerates loss, so a message to an unreachable peer is dropped (and reported as
 * PeerDown once). Implementations: TCP between processes, in-memory for tests.
 *
 * What arrives goes to the sink attached with `deliverTo` (the node's actor), synchronously, in
 * the callback that read it; while none is attached it waits, bounded, in a mailbox that
 * `inbound` reads (tests and benches observe a transport that way). A stream in between cost
 * the node a fiber hop and the stream's machinery for every read.
 */
export class Transport extends Context.Tag("cluster_mgr/Transport")<
  Transport,
  {
    readonly send: (messages: ReadonlyArray<Message>) => Effect.Effect<void>
    /**
     * `send` for a caller that runs synchronously (the node's actor): writes what it can at
     * once, in the caller's turn, and returns the rest (messages to queue behind a busy
     * connection, faults to apply) as an Effect to run next, or undefined when nothing is left.
     */
    readonly sendNow: (messages: ReadonlyArray<Message>) => Effect.Effect<void> | undefined
    readonly inbound: Stream.Stream<Inbound>
    /** Delivers to `sink` while the scope is open, starting with whatever waited in `inbound`. */
    readonly deliverTo: (sink: (inbound: Inbound) => void) => Effect.Effect<void, never, Scope.Scope>
    /**
     * The HTTP API addresses members announced when they connected (raft address to "host:port"),
     * the latest of each: how a member reaches another's HTTP without having seen it lead.
     * Unchecked claims: what is fetched there is checked (HistoryBackfill checks every page).
     */
    readonly peerHttp: () => ReadonlyMap<string, string>
  }
>() {}

/**
 * Where a transport puts what it received: the attached sink, else the mailbox that `inbound`
 * reads. A Mailbox (an array), not a Queue: a Queue's linked list promotes every message to V8's
 * old generation (see RaftNode's inbox). `inbound` and `deliverTo` are the Transport's own.
 */
export class InboundDelivery {
  private sink: ((inbound: Inbound) => void) | undefined = undefined
  readonly inbound: Stream.Stream<Inbound>

  private constructor(private readonly mailbox: Mailbox.Mailbox<Inbound>) {
    this.inbound = Mailbox.toStream(mailbox)
  }

  /** Holds at most `capacity` messages while no sink is attached, dropping the oldest; shut down with the scope. */
  static make(capacity: number): Effect.Effect<InboundDelivery, never, Scope.Scope> {
    return Effect.map(
      Effect.acquireRelease(Mailbox.make<Inbound>({ capacity, strategy: "sliding" }), (mailbox) => mailbox.shutdown),
      (mailbox) => new InboundDelivery(mailbox)
    )
  }

  offer(inbound: Inbound): void {
    if (this.sink !== undefined) this.sink(inbound)
    else this.mailbox.unsafeOffer(inbound)
  }

  /** Transport.deliverTo. The sink is set before the mailbox is emptied, so nothing stays behind. */
  readonly deliverTo = (sink: (inbound: Inbound) => void): Effect.Effect<void, never, Scope.Scope> =>
    Effect.acquireRelease(
      Effect.zipRight(
        Effect.sync(() => {
          this.sink = sink
        }),
        Effect.flatMap(this.mailbox.clear, (waiting) =>
          Effect.sync(() => {
            for (const inbound of waiting) sink(inbound)
          }))
      ),
      () =>
        Effect.sync(() => {
          if (this.sink === sink) this.sink = undefined
        })
    )
}
