// Throughput of TcpTransport over loopback: one sender streams AppendEntries to one receiver,
// keeping a bounded window in flight (so no queue overflows and nothing is dropped), for
// entries of ~200 bytes, 1 and 64 per message, with the JSON codec and, when it is installed,
// msgpack (msgpackr). Also the CPU cost per message of encoding, decoding and the schema check.
// Run: npx tsx bench/transport.ts
import * as net from "node:net"
import { Chunk, Context, Effect, Layer, Queue, Stream } from "effect"
import * as TcpTransport from "../src/actors/TcpTransport.js"
import { Transport } from "../src/actors/Transport.js"
import { type Codec, decodeMessage, encodeMessage, jsonCodec } from "../src/actors/wire.js"
import type { Message } from "../src/domain/raft/messages.js"

const RUN_MS = 3000
const SEND_BATCH = 64
const WINDOW = 4096
const host = "127.0.0.1"
const data = "x".repeat(160)

const appendEntries = (from: string, to: string, count: number): Message => ({
  _tag: "AppendEntries",
  group: "bench",
  from,
  to,
  term: 7,
  prevLogIndex: 1000,
  prevLogTerm: 7,
  commit: 1000,
  entries: Array.from({ length: count }, (_, i) => ({
    index: 1001 + i,
    term: 7,
    payload: { _tag: "Command" as const, data }
  }))
})

/** msgpackr comes with @effect/platform; loaded by name so the bench runs without it too. */
const loadMsgpack = async (): Promise<Codec | undefined> => {
  const specifier = "msgpackr"
  try {
    const { Packr } = await import(specifier)
    // Plain msgpack maps: the records extension needs structures shared by both ends.
    const packr = new Packr({ useRecords: false })
    return { name: "msgpack", encode: (value) => packr.pack(value), decode: (bytes) => packr.unpack(bytes) }
  } catch {
    return undefined
  }
}

const freePort = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.listen({ host, port: 0 }, () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

const transportAt = (codec: Codec, port: number) =>
  Effect.map(
    Layer.build(
      TcpTransport.layer({
        group: "bench",
        self: `${host}:${port}`,
        listen: { host, port },
        codec,
        peerQueueCapacityMax: WINDOW * 2,
        inboundCapacityMax: WINDOW * 2
      })
    ),
    (context) => Context.get(context, Transport)
  )

/** Messages the receiver has taken since last asked; waits for at least one. */
const acknowledged = (credits: Queue.Queue<number>) =>
  Effect.map(Queue.takeBetween(credits, 1, Infinity), Chunk.reduce(0, (sum, n) => sum + n))

/** Streams for RUN_MS with at most WINDOW messages unacknowledged; returns messages delivered. */
const stream = (codec: Codec, entries: number) =>
  Effect.gen(function*() {
    const [portA, portB] = [yield* freePort, yield* freePort]
    const sender = yield* transportAt(codec, portA)
    const receiver = yield* transportAt(codec, portB)
    const credits = yield* Queue.unbounded<number>()
    yield* receiver.inbound.pipe(
      Stream.runForEachChunk((chunk) => Queue.offer(credits, Chunk.size(chunk))),
      Effect.forkScoped
    )
    const message = appendEntries(`${host}:${portA}`, `${host}:${portB}`, entries)
    const batch = Array.from({ length: SEND_BATCH }, () => message)
    const start = performance.now()
    let credit = WINDOW
    let sent = 0
    while (performance.now() - start < RUN_MS) {
      while (credit < SEND_BATCH) credit += yield* acknowledged(credits)
      yield* sender.send(batch)
      credit -= SEND_BATCH
      sent += SEND_BATCH
    }
    while (credit < WINDOW) credit += yield* acknowledged(credits)
    const seconds = (performance.now() - start) / 1000
    return { delivered: sent, seconds, bytes: encodeMessage(codec, batch[0]).length + 4 }
  }).pipe(Effect.scoped)

/** Encode + decode with the schema check, in one thread, per message. */
const cpuCost = (codec: Codec, entries: number) => {
  const message = appendEntries("a:1", "b:1", entries)
  const rounds = entries === 1 ? 200_000 : 10_000
  const start = performance.now()
  for (let i = 0; i < rounds; i++) decodeMessage(codec, encodeMessage(codec, message))
  return ((performance.now() - start) * 1000) / rounds
}

const report = (codec: Codec, entries: number) =>
  Effect.map(stream(codec, entries), ({ bytes, delivered, seconds }) => {
    const perS = delivered / seconds
    const row = [
      codec.name.padEnd(8),
      String(entries).padStart(3),
      String(bytes).padStart(7),
      Math.round(perS).toLocaleString("en").padStart(10),
      Math.round(perS * entries).toLocaleString("en").padStart(11),
      ((perS * bytes) / 1e6).toFixed(1).padStart(7),
      cpuCost(codec, entries).toFixed(2).padStart(9)
    ]
    console.log(row.join("  "))
  })

const main = async () => {
  const codecs = [jsonCodec, await loadMsgpack()].filter((c): c is Codec => c !== undefined)
  console.log(`loopback, ${RUN_MS} ms per row, window ${WINDOW} messages, batches of ${SEND_BATCH} per send`)
  console.log("codec     entries  bytes/msg      msgs/s    entries/s     MB/s  cpu us/msg")
  for (const codec of codecs) {
    for (const entries of [1, 64]) await Effect.runPromise(report(codec, entries))
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
