import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Stream } from "effect"
import type { Message } from "../../src/domain/raft/messages.js"
import { rememberAnnounced } from "../../src/actors/TcpTransport.js"
import {
  captureLogs,
  closedBy,
  freePort,
  group,
  heartbeat,
  inboundWithin,
  node as fixtureNode,
  rawConnect,
  rawFrame,
  startNode,
  takeInbound,
  takeMessages
} from "./tcpFixtures.js"

const roundsOf = (messages: ReadonlyArray<Message>) => messages.map((m) => (m._tag === "Heartbeat" ? m.round : -1))

const hello = (from: string, helloGroup = group) => rawFrame(JSON.stringify({ group: helloGroup, from }))

type NodeOptions = Parameters<typeof fixtureNode>[0]
const node = (options: NodeOptions = {}) => fixtureNode(options)

/**
 * A transport that can inject faults reads each connection with a fiber (a delay holds a read
 * back); one that cannot, as in production, reads in the socket's callback. Delivery and
 * refusal are checked both ways.
 */
const readModes = [
  { faultInjection: true, mode: "" },
  { faultInjection: false, mode: " (reading in the socket's callback)" }
]

for (const { faultInjection, mode } of readModes) {
describe(`TcpTransport: delivery${mode}`, () => {
  const node = (options: NodeOptions = {}) => fixtureNode({ faultInjection, ...options })
  it.scopedLive("two transports exchange messages both ways", () =>
    Effect.gen(function*() {
      const a = yield* node()
      const b = yield* node()
      yield* a.transport.send([heartbeat(a.address, b.address, 1)])
      yield* b.transport.send([heartbeat(b.address, a.address, 2)])
      expect(yield* takeMessages(b.transport, 1)).toEqual([heartbeat(a.address, b.address, 1)])
      expect(yield* takeMessages(a.transport, 1)).toEqual([heartbeat(b.address, a.address, 2)])
    }))

  it.scopedLive("a member's handshake announces its HTTP address; another group's and a nameless one's do not count", () =>
    Effect.gen(function*() {
      const a = yield* node({ http: "127.0.0.1:18000" })
      const b = yield* node({ http: "127.0.0.1:18010" })
      const silent = yield* node()
      yield* a.transport.send([heartbeat(a.address, b.address, 1)])
      yield* silent.transport.send([heartbeat(silent.address, b.address, 1)])
      expect(yield* takeMessages(b.transport, 2)).toHaveLength(2)
      expect([...b.transport.peerHttp()]).toEqual([[a.address, "127.0.0.1:18000"]])
      const socket = yield* rawConnect(b.port)
      socket.write(rawFrame(JSON.stringify({ group: "g2", from: "10.0.0.9:1", http: "10.0.0.9:2" })))
      yield* closedBy(socket, 2000)
      expect([...b.transport.peerHttp()]).toEqual([[a.address, "127.0.0.1:18000"]])
      expect(a.transport.peerHttp().size).toBe(0) // b has sent it nothing: no connection of b's yet
    }))

  it.scopedLive("an attached sink gets what waited, then what arrives, in order", () =>
    Effect.gen(function*() {
      const a = yield* node()
      const b = yield* node()
      yield* a.transport.send([heartbeat(a.address, b.address, 1), heartbeat(a.address, b.address, 2)])
      // Time for 1 and 2 to arrive while no sink is attached: they wait in the mailbox.
      yield* Effect.sleep("200 millis")
      const got: Array<Message> = []
      yield* b.transport.deliverTo((e) => {
        if (e._tag === "Message") got.push(e.message)
      })
      yield* a.transport.send([heartbeat(a.address, b.address, 3)])
      const deadline = (yield* Clock.currentTimeMillis) + 5000
      while (got.length < 3 && (yield* Clock.currentTimeMillis) < deadline) yield* Effect.sleep("10 millis")
      expect(roundsOf(got)).toEqual([1, 2, 3])
    }))

  it.scopedLive("among three transports each receives what the other two sent it", () =>
    Effect.gen(function*() {
      const nodes = [yield* node(), yield* node(), yield* node()]
      for (const from of nodes) {
        const others = nodes.filter((n) => n !== from)
        yield* from.transport.send(others.map((to) => heartbeat(from.address, to.address, 1)))
      }
      for (const to of nodes) {
        const received = yield* takeMessages(to.transport, 2)
        const senders = nodes.filter((n) => n !== to).map((n) => n.address)
        expect(received.map((m) => m.from).sort()).toEqual(senders.sort())
      }
    }))

  it.scopedLive("every message kind crosses the wire unchanged", () =>
    Effect.gen(function*() {
      const a = yield* node()
      const b = yield* node()
      const header = { group, from: a.address, to: b.address, term: 3 }
      const config = { voters: [a.address, b.address], outgoing: [], learners: [] }
      const messages: Array<Message> = [
        {
          _tag: "AppendEntries",
          ...header,
          prevLogIndex: 4,
          prevLogTerm: 2,
          commit: 4,
          entries: [
            { index: 5, term: 3, payload: { _tag: "Noop" } },
            { index: 6, term: 3, payload: { _tag: "Command", data: "héllo \u0000 ☃" } },
            { index: 7, term: 3, payload: { _tag: "Config", config } }
          ]
        },
        { _tag: "InstallSnapshot", ...header, meta: { index: 9, term: 3, config }, offset: 0, data: "img", done: true },
        { _tag: "RequestVote", ...header, lastLogIndex: 7, lastLogTerm: 3, transfer: true },
        { _tag: "TimeoutNow", ...header }
      ]
      yield* a.transport.send(messages)
      expect(yield* takeMessages(b.transport, messages.length)).toEqual(messages)
    }))

  it.scopedLive("messages from one sender arrive in the order sent, and none is lost while its queue has room", () =>
    Effect.gen(function*() {
      const a = yield* node({ peerQueueCapacityMax: 20_000 })
      const b = yield* node()
      const count = 10_000
      for (let first = 1; first <= count; first += 100) {
        const batch = Array.from({ length: 100 }, (_, i) => heartbeat(a.address, b.address, first + i))
        yield* a.transport.send(batch)
      }
      const received = yield* takeMessages(b.transport, count, 10_000)
      expect(roundsOf(received)).toEqual(Array.from({ length: count }, (_, i) => i + 1))
    }))

  it.scopedLive("on a connected link, writes at once and the queue behind a busy socket keep one order", () =>
    Effect.gen(function*() {
      // Without fault injection, as in production: only then may a send write at once.
      const a = yield* node({ peerQueueCapacityMax: 20_000, faultInjection: false })
      // Nothing reads b until every batch is sent: its mailbox must hold them all.
      const b = yield* node({ inboundCapacityMax: 20_000 })
      yield* a.transport.send([heartbeat(a.address, b.address, 0)])
      yield* takeMessages(b.transport, 1)
      // 16 MB in appends of 32 KB outrun the kernel's socket buffers: once the socket needs a
      // drain, later batches queue behind it, and once the queue is empty again sends write at
      // once. The sleeps let the queue empty now and then.
      const data = "x".repeat(32 * 1024)
      const append = (n: number): Message => ({
        _tag: "AppendEntries",
        group,
        from: a.address,
        to: b.address,
        term: 1,
        prevLogIndex: n,
        prevLogTerm: 1,
        entries: [{ index: n + 1, term: 1, payload: { _tag: "Command", data } }],
        commit: 0
      })
      const count = 512
      for (let first = 1; first <= count; first += 4) {
        yield* a.transport.send([0, 1, 2, 3].map((i) => append(first + i)))
        if (first % 64 === 1) yield* Effect.sleep("2 millis")
      }
      const received = yield* takeMessages(b.transport, count, 20_000)
      expect(received.map((m) => (m._tag === "AppendEntries" ? m.prevLogIndex : -1))).toEqual(
        Array.from({ length: count }, (_, i) => i + 1)
      )
    }))

  it.scopedLive("a full peer queue drops the oldest messages and keeps the newest", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const a = yield* node({ peerQueueCapacityMax: 10 })
      const to = `127.0.0.1:${port}`
      yield* a.transport.send(Array.from({ length: 50 }, (_, i) => heartbeat(a.address, to, i + 1)))
      const b = yield* Effect.acquireRelease(startNode(port), (n) => n.close)
      const received = yield* takeMessages(b.transport, 10)
      expect(roundsOf(received)).toEqual(Array.from({ length: 10 }, (_, i) => 41 + i))
    }))

  it.scopedLive("a message larger than the frame maximum is dropped by its sender, and the connection kept", () =>
    Effect.gen(function*() {
      const a = yield* node({ frameBytesMax: 512 })
      const b = yield* node()
      const big: Message = { ...heartbeat(a.address, b.address, 1), group: "g".repeat(1000) }
      yield* a.transport.send([big, heartbeat(a.address, b.address, 2)])
      expect(roundsOf(yield* takeMessages(b.transport, 1))).toEqual([2])
    }))
})
}

describe("TcpTransport: peers going down and coming back", () => {
  it.scopedLive("a peer that starts later is reported down, then reached once it listens", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const a = yield* node()
      const to = `127.0.0.1:${port}`
      yield* a.transport.send([heartbeat(a.address, to, 1)])
      expect(yield* takeInbound(a.transport, 1)).toEqual([{ _tag: "PeerDown", peer: to }])
      yield* Effect.sleep("200 millis")
      const b = yield* Effect.acquireRelease(startNode(port), (n) => n.close)
      expect(yield* takeMessages(b.transport, 1, 3000)).toEqual([heartbeat(a.address, to, 1)])
    }))

  // Without fault injection a send to a connected peer is written at once: the closed connection
  // must stop taking writes, and the new one take them.
  const writeModes = [{ faultInjection: true, mode: "" }, { faultInjection: false, mode: " (writes at once)" }]
  for (const { faultInjection, mode } of writeModes) {
    it.scopedLive(`a peer whose transport closes is reported down once, and reached again on the same port${mode}`, () =>
      Effect.gen(function*() {
        const a = yield* node({ faultInjection })
        const b = yield* startNode(yield* freePort)
        yield* a.transport.send([heartbeat(a.address, b.address, 1)])
        yield* takeMessages(b.transport, 1)
        yield* b.close
        expect(yield* takeInbound(a.transport, 1)).toEqual([{ _tag: "PeerDown", peer: b.address }])
        yield* a.transport.send([heartbeat(a.address, b.address, 2)])
        // Several reconnect attempts fail meanwhile; none is reported again.
        expect(yield* inboundWithin(a.transport, 600)).toEqual([])
        const back = yield* Effect.acquireRelease(startNode(b.port), (n) => n.close)
        yield* a.transport.send([heartbeat(a.address, b.address, 3)])
        const received = yield* back.transport.inbound.pipe(
          Stream.takeUntil((event) => event._tag === "Message" && roundsOf([event.message])[0] === 3),
          Stream.runCollect,
          Effect.timeout("3 seconds")
        )
        expect(received.length).toBeGreaterThan(0)
      }))
  }
})

for (const { faultInjection, mode } of readModes) {
describe(`TcpTransport: refusing what is not ours${mode}`, () => {
  const node = (options: NodeOptions = {}) => fixtureNode({ faultInjection, ...options })
  it.scopedLive("a node of another group is refused, and logged once however often it retries", () => {
    const logs = captureLogs()
    return Effect.gen(function*() {
      const a = yield* node()
      const other = yield* node({ group: "g2" })
      yield* other.transport.send([heartbeat(other.address, a.address, 1, "g2")])
      expect(yield* inboundWithin(a.transport, 500)).toEqual([])
      const socket = yield* rawConnect(a.port)
      socket.write(hello("10.0.0.9:1", "g2"))
      yield* closedBy(socket, 2000)
      const refusal = `WARN refused a connection from ${other.address} of group g2`
      expect(logs.lines.filter((line) => line === refusal)).toHaveLength(1)
      expect(logs.lines).toContain("WARN refused a connection from 10.0.0.9:1 of group g2")
    }).pipe(Effect.provide(logs.layer))
  })

  it.scopedLive("a message of another group on an admitted connection is dropped, the connection kept", () =>
    Effect.gen(function*() {
      const a = yield* node()
      const socket = yield* rawConnect(a.port)
      const from = "10.0.0.9:1"
      socket.write(hello(from))
      yield* Effect.sleep("50 millis")
      socket.write(rawFrame(JSON.stringify(heartbeat(from, a.address, 1, "g2"))))
      socket.write(rawFrame(JSON.stringify(heartbeat(from, a.address, 2))))
      expect(roundsOf(yield* takeMessages(a.transport, 1))).toEqual([2])
    }))

  const garbage: Record<string, (from: string, to: string) => Array<Buffer>> = {
    "a frame that is not JSON": (from) => [hello(from), rawFrame("not json {")],
    "a JSON frame that is not a message": (from) => [hello(from), rawFrame(JSON.stringify({ _tag: "Heartbeat" }))],
    "a message with a field of the wrong type": (from, to) => [
      hello(from),
      rawFrame(JSON.stringify({ ...heartbeat(from, to, 1), term: "one" }))
    ],
    // Effect's union parser reads the tag with String(), which throws on such an object.
    "a message whose _tag cannot be read as text": (from, to) => [
      hello(from),
      rawFrame(JSON.stringify({ ...heartbeat(from, to, 1), _tag: { toString: 1 } }))
    ],
    "a frame longer than the maximum": (from) => [hello(from), Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3])],
    "a handshake that is not one": () => [rawFrame(JSON.stringify({ hello: true }))]
  }
  for (const [name, frames] of Object.entries(garbage)) {
    it.scopedLive(`${name} drops the connection with a warning, and the transport keeps serving`, () => {
      const logs = captureLogs()
      return Effect.gen(function*() {
        const a = yield* node()
        const b = yield* node()
        const socket = yield* rawConnect(a.port)
        // The handshake read on its own: what follows takes the connection's steady reading path.
        const [first, ...rest] = frames(b.address, a.address)
        socket.write(first)
        yield* Effect.sleep("50 millis")
        for (const frame of rest) socket.write(frame)
        yield* closedBy(socket, 2000)
        expect(logs.lines.filter((line) => line.startsWith("WARN dropping the connection"))).toHaveLength(1)
        yield* b.transport.send([heartbeat(b.address, a.address, 1)])
        expect(yield* takeMessages(a.transport, 1)).toEqual([heartbeat(b.address, a.address, 1)])
      }).pipe(Effect.provide(logs.layer))
    })
  }

  it.scopedLive("a port in use fails the layer with a TransportListenError naming the port", () =>
    Effect.gen(function*() {
      const a = yield* node()
      const error = yield* Effect.flip(startNode(a.port))
      expect(error._tag).toBe("TransportListenError")
      expect(error.port).toBe(a.port)
      expect(error.message).toContain(`127.0.0.1:${a.port}`)
    }))
})
}

describe("TcpTransport: fault injection", () => {
  it.scopedLive("block drops traffic to and from a peer until heal", () =>
    Effect.gen(function*() {
      const a = yield* node()
      const b = yield* node()
      yield* a.transport.send([heartbeat(a.address, b.address, 1)])
      yield* takeMessages(b.transport, 1)
      yield* a.control.block(b.address)
      yield* a.transport.send([heartbeat(a.address, b.address, 2)])
      yield* b.transport.send([heartbeat(b.address, a.address, 3)])
      expect(yield* inboundWithin(b.transport, 300)).toEqual([])
      expect(yield* inboundWithin(a.transport, 300)).toEqual([])
      yield* a.control.heal()
      yield* a.transport.send([heartbeat(a.address, b.address, 4)])
      yield* b.transport.send([heartbeat(b.address, a.address, 5)])
      expect(roundsOf(yield* takeMessages(b.transport, 1))).toEqual([4])
      expect(roundsOf(yield* takeMessages(a.transport, 1))).toEqual([5])
    }))

  it.scopedLive("blockAll also blocks peers first contacted afterwards, and unblock leaves it in force", () =>
    Effect.gen(function*() {
      const a = yield* node()
      const b = yield* node()
      yield* a.control.blockAll()
      yield* a.control.unblock(b.address)
      yield* a.transport.send([heartbeat(a.address, b.address, 1)])
      expect(yield* inboundWithin(b.transport, 300)).toEqual([])
      yield* a.control.heal()
      yield* a.transport.send([heartbeat(a.address, b.address, 2)])
      expect(roundsOf(yield* takeMessages(b.transport, 1))).toEqual([2])
    }))

  it.scopedLive("delayMs holds messages to and from a peer back by at least the delay, in order", () =>
    Effect.gen(function*() {
      const a = yield* node()
      const b = yield* node()
      yield* a.control.delayMs(b.address, 200)
      const outStart = yield* Clock.currentTimeMillis
      yield* a.transport.send([heartbeat(a.address, b.address, 1), heartbeat(a.address, b.address, 2)])
      expect(roundsOf(yield* takeMessages(b.transport, 2))).toEqual([1, 2])
      expect((yield* Clock.currentTimeMillis) - outStart).toBeGreaterThanOrEqual(195)
      const inStart = yield* Clock.currentTimeMillis
      yield* b.transport.send([heartbeat(b.address, a.address, 3)])
      expect(roundsOf(yield* takeMessages(a.transport, 1))).toEqual([3])
      expect((yield* Clock.currentTimeMillis) - inStart).toBeGreaterThanOrEqual(195)
    }))

  it.scopedLive("fault operations fail when fault injection is off", () =>
    Effect.gen(function*() {
      const a = yield* node({ faultInjection: false })
      const error = yield* Effect.flip(a.control.block("127.0.0.1:1"))
      expect(error._tag).toBe("FaultInjectionDisabled")
      expect((yield* Effect.flip(a.control.heal()))._tag).toBe("FaultInjectionDisabled")
    }))
})

describe("TcpTransport: announced HTTP addresses", () => {
  it("keeps a bounded number of announced addresses, the newest of each node", () => {
    const announced = new Map<string, string>()
    for (let i = 0; i < 300; i++) rememberAnnounced(announced, `10.0.0.${i}:1`, `10.0.0.${i}:2`)
    rememberAnnounced(announced, "10.0.0.299:1", "10.0.0.299:3")
    expect(announced.size).toBe(256)
    expect(announced.has("10.0.0.43:1")).toBe(false)
    expect(announced.get("10.0.0.44:1")).toBe("10.0.0.44:2")
    expect([...announced].at(-1)).toEqual(["10.0.0.299:1", "10.0.0.299:3"])
  })
})
