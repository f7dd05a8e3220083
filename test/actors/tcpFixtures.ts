import * as net from "node:net"
import { Chunk, Context, Effect, Exit, Layer, Logger, Option, Scope, Stream } from "effect"
import type { Message } from "../../src/domain/raft/messages.js"
import * as TcpTransport from "../../src/actors/TcpTransport.js"
import { type Inbound, Transport } from "../../src/actors/Transport.js"
import { TransportControl, type TransportFaults } from "../../src/actors/TransportControl.js"

export const group = "g1"
export const host = "127.0.0.1"

export const heartbeat = (from: string, to: string, round: number, messageGroup = group): Message => ({
  _tag: "Heartbeat",
  group: messageGroup,
  from,
  to,
  term: 1,
  commit: 0,
  round
})

/** A port nobody listens on now: bind port 0, read what the kernel chose, release it. */
export const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.listen({ host, port: 0 }, () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

export interface Node {
  readonly address: string
  readonly port: number
  readonly transport: Context.Tag.Service<Transport>
  readonly control: TransportFaults
  /** Closes this node's transport alone, as a crashed process would. */
  readonly close: Effect.Effect<void>
}

/** A TCP transport on `port` in a scope of its own, so a test can stop one node at a time. */
export const startNode = (
  port: number,
  options: Partial<TcpTransport.TcpTransportOptions> = {}
): Effect.Effect<Node, TcpTransport.TransportListenError> =>
  Effect.gen(function*() {
    const address = `${host}:${port}`
    const scope = yield* Scope.make()
    const layer = TcpTransport.layer({ group, self: address, listen: { host, port }, faultInjection: true, ...options })
    const context = yield* Layer.buildWithScope(layer, scope).pipe(
      Effect.tapError(() => Scope.close(scope, Exit.void))
    )
    return {
      address,
      port,
      transport: Context.get(context, Transport),
      control: Context.get(context, TransportControl),
      close: Scope.close(scope, Exit.void)
    }
  })

/** A node on a fresh port, closed with the test's scope. */
export const node = (options: Partial<TcpTransport.TcpTransportOptions> = {}) =>
  Effect.acquireRelease(
    Effect.flatMap(freePort, (port) => startNode(port, options)),
    (started) => started.close
  )

/** The next `count` inbound events, or a timeout failure after `ms`. */
export const takeInbound = (transport: Context.Tag.Service<Transport>, count: number, ms = 5000) =>
  transport.inbound.pipe(
    Stream.take(count),
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray),
    Effect.timeoutFail({ duration: ms, onTimeout: () => new Error(`fewer than ${count} inbound events in ${ms} ms`) })
  )

/** The next `count` messages, skipping PeerDown reports. */
export const takeMessages = (transport: Context.Tag.Service<Transport>, count: number, ms = 5000) =>
  transport.inbound.pipe(
    Stream.filterMap((event) => (event._tag === "Message" ? Option.some(event.message) : Option.none())),
    Stream.take(count),
    Stream.runCollect,
    Effect.map(Chunk.toReadonlyArray),
    Effect.timeoutFail({ duration: ms, onTimeout: () => new Error(`fewer than ${count} messages in ${ms} ms`) })
  )

/** Everything that arrives within `ms`: for asserting that nothing does. */
export const inboundWithin = (transport: Context.Tag.Service<Transport>, ms: number) =>
  transport.inbound.pipe(
    Stream.interruptAfter(ms),
    Stream.runCollect,
    Effect.map((events): ReadonlyArray<Inbound> => Chunk.toReadonlyArray(events))
  )

/** A raw client socket, for speaking broken protocol to a transport. Destroyed with the scope. */
export const rawConnect = (port: number) =>
  Effect.acquireRelease(
    Effect.async<net.Socket, Error>((resume) => {
      const socket = net.connect({ host, port })
      socket.once("error", (error) => resume(Effect.fail(error)))
      socket.once("connect", () => resume(Effect.succeed(socket)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  )

export const rawFrame = (payload: Buffer | string): Buffer => {
  const body = typeof payload === "string" ? Buffer.from(payload) : payload
  const header = Buffer.alloc(4)
  header.writeUInt32BE(body.length)
  return Buffer.concat([header, body])
}

/** Completes when the other end closes `socket`; fails after `ms`. */
export const closedBy = (socket: net.Socket, ms: number) =>
  Effect.async<void>((resume) => {
    socket.resume()
    if (socket.destroyed) return resume(Effect.void)
    socket.once("close", () => resume(Effect.void))
  }).pipe(Effect.timeoutFail({ duration: ms, onTimeout: () => new Error(`socket still open after ${ms} ms`) }))

/** A logger that keeps "LEVEL message" lines, to assert what a transport reported. */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}
