import { describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Exit, Layer, Scope, Stream } from "effect"
import { MemoryNetwork, MemoryTransport } from "../../src/actors/MemoryTransport.js"
import { Transport } from "../../src/actors/Transport.js"
import { heartbeat } from "./tcpFixtures.js"

const member = (network: MemoryNetwork, self: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(MemoryTransport.layer(network, self), scope)
    return { transport: Context.get(context, Transport), close: Scope.close(scope, Exit.void) }
  })

type Member = Effect.Effect.Success<ReturnType<typeof member>>

/** Every event waiting in `m`'s inbox now (delivery is synchronous, so nothing is in flight). */
const drain = (m: Member) =>
  m.transport.inbound.pipe(Stream.interruptAfter("20 millis"), Stream.runCollect, Effect.map(Chunk.toReadonlyArray))

/** Heartbeat rounds received, and "PeerDown" where a peer was reported down. */
const rounds = (m: Member) =>
  Effect.map(drain(m), (events) =>
    events.map((e) => (e._tag === "Message" && e.message._tag === "Heartbeat" ? e.message.round : e._tag)))

const three = Effect.gen(function*() {
  const network = yield* MemoryNetwork.make
  return { network, a: yield* member(network, "a"), b: yield* member(network, "b"), c: yield* member(network, "c") }
})

describe("MemoryTransport", () => {
  it.live("delivers each sender's messages in order", () =>
    Effect.gen(function*() {
      const { a, b } = yield* three
      yield* a.transport.send([heartbeat("a", "b", 1), heartbeat("a", "b", 2)])
      yield* a.transport.send([heartbeat("a", "b", 3)])
      expect(yield* rounds(b)).toEqual([1, 2, 3])
    }))

  it.live("an attached sink gets what waited first, then each message within the send; detached, messages wait again", () =>
    Effect.gen(function*() {
      const { a, b } = yield* three
      yield* a.transport.send([heartbeat("a", "b", 1)])
      const got: Array<number> = []
      const sinkScope = yield* Scope.make()
      yield* b.transport.deliverTo((e) => {
        if (e._tag === "Message" && e.message._tag === "Heartbeat") got.push(e.message.round)
      }).pipe(Scope.extend(sinkScope))
      expect(got).toEqual([1])
      yield* a.transport.send([heartbeat("a", "b", 2), heartbeat("a", "b", 3)])
      expect(got).toEqual([1, 2, 3])
      yield* Scope.close(sinkScope, Exit.void)
      yield* a.transport.send([heartbeat("a", "b", 4)])
      expect(got).toEqual([1, 2, 3])
      expect(yield* rounds(b)).toEqual([4])
    }))

  it.live("a member without a transport is reported down once, and reached again when it returns", () =>
    Effect.gen(function*() {
      const { network, a, b } = yield* three
      yield* b.close
      yield* a.transport.send([heartbeat("a", "b", 1), heartbeat("a", "b", 2)])
      expect(yield* rounds(a)).toEqual(["PeerDown"])
      const back = yield* member(network, "b")
      yield* a.transport.send([heartbeat("a", "b", 3)])
      expect(yield* rounds(back)).toEqual([3])
      yield* back.close
      yield* a.transport.send([heartbeat("a", "b", 4)])
      expect(yield* rounds(a)).toEqual(["PeerDown"])
    }))

  it.live("a cut link loses messages one way only, silently", () =>
    Effect.gen(function*() {
      const { network, a, b } = yield* three
      yield* network.cut("a", "b")
      yield* a.transport.send([heartbeat("a", "b", 1)])
      yield* b.transport.send([heartbeat("b", "a", 2)])
      expect(yield* rounds(b)).toEqual([])
      expect(yield* rounds(a)).toEqual([2])
    }))

  it.live("a partition separates its sides both ways and leaves each side connected", () =>
    Effect.gen(function*() {
      const { network, a, b, c } = yield* three
      yield* network.partition([["a", "b"], ["c"]])
      yield* a.transport.send([heartbeat("a", "b", 1), heartbeat("a", "c", 2)])
      yield* c.transport.send([heartbeat("c", "a", 3)])
      expect(yield* rounds(b)).toEqual([1])
      expect(yield* rounds(c)).toEqual([])
      expect(yield* rounds(a)).toEqual([])
      yield* network.heal()
      yield* c.transport.send([heartbeat("c", "a", 4)])
      expect(yield* rounds(a)).toEqual([4])
    }))

  it.live("an isolated member neither hears nor is heard until heal", () =>
    Effect.gen(function*() {
      const { network, a, b, c } = yield* three
      yield* network.isolate("a")
      yield* a.transport.send([heartbeat("a", "b", 1)])
      yield* c.transport.send([heartbeat("c", "a", 2), heartbeat("c", "b", 3)])
      expect(yield* rounds(a)).toEqual([])
      expect(yield* rounds(b)).toEqual([3])
      yield* network.heal()
      yield* a.transport.send([heartbeat("a", "b", 4)])
      expect(yield* rounds(b)).toEqual([4])
    }))
})
