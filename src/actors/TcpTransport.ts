import type * as net from "node:net"
import {
  Chunk,
  Clock,
  Context,
  Data,
  Effect,
  Either,
  FiberSet,
  Layer,
  Mailbox,
  Option,
  Ref,
  Schedule
} from "effect"
import type { Message } from "../domain/raft/messages.js"
import { FrameDecoder, frameBytesMaxDefault, type FrameTooLarge, frameHeader } from "./frame.js"
import { type Address, awaitClose, connect, listen, parseAddress, readChunk, SocketError, writeAll } from "./socket.js"
import { InboundDelivery, Transport } from "./Transport.js"
import { delayMsOf, type Faults, isBlocked, makeControl, noFaults, TransportControl } from "./TransportControl.js"
import { type Codec, decodeHello, decodeMessage, encodeHello, encodeMessage, type Hello, type InvalidFrame, jsonCodec } from "./wire.js"

/**
 * Transport between cluster_mgr processes over TCP. Each node listens on its raft address and
 * opens one outgoing connection per peer, so a connection carries traffic one way: requests go
 * out on ours, replies come back on the peer's. Per-connection order is preserved; loss is not
 * prevented (Raft retries), only reported as PeerDown.
 */

export interface TcpTransportOptions {
  /** The cluster's group id; connections and messages of another group are refused. */
  readonly group: string
  /** This node's raft address, "ip:port": its name in messages and in handshakes. */
  readonly self: string
  /** This node's HTTP API address, "ip:port", announced in its handshakes (Transport.peerHttp). */
  readonly http?: string
  readonly listen: { readonly host: string; readonly port: number }
  /** Enables TransportControl; off in production. */
  readonly faultInjection?: boolean
  /** The payload codec, JSON by default; every node of a cluster must use the same. */
  readonly codec?: Codec
  /** Messages waiting for one peer; beyond it the oldest are dropped. */
  readonly peerQueueCapacityMax?: number
  /** Received messages the node has not taken yet; beyond it the oldest are dropped. */
  readonly inboundCapacityMax?: number
  readonly frameBytesMax?: number
  readonly connectTimeoutMs?: number
}

/** The listening socket could not be opened, typically because the port is in use. */
export class TransportListenError extends Data.TaggedError("TransportListenError")<{
  readonly host: string
  readonly port: number
  readonly reason: string
}> {
  override get message(): string {
    return `cannot listen on ${this.host}:${this.port}: ${this.reason}`
  }
}

/** The peer closed a connection; on an inbound connection that is the normal end. */
class ConnectionEnded extends Data.TaggedError("ConnectionEnded")<{}> {}

/**
 * Starts at 20 ms so a restarted peer is found quickly, caps at 1 s so a long outage costs one
 * attempt a second, and jitters so the members of a cluster do not reconnect in lockstep.
 */
const reconnectBackoff = Schedule.exponential("20 millis").pipe(
  Schedule.either(Schedule.spaced("1 second")),
  Schedule.jittered
)

/**
 * A connection that lasted this long was healthy, so the next outage starts again from the
 * shortest backoff. A peer that accepts and at once closes (it refuses our group) never gets
 * there, so we do not hammer it.
 */
const healthyConnectionMs = 1000

/** Bounds the memory a stream of bogus handshakes can make the refusal log take. */
const refusedRememberedMax = 1024

/** Bounds the HTTP addresses kept from handshakes: a group has a handful of members, not this many. */
const announcedRememberedMax = 256

/** Keeps `from`'s announced address as the newest, forgetting the oldest beyond the bound. */
export const rememberAnnounced = (announced: Map<string, string>, from: string, http: string): void => {
  announced.delete(from)
  if (announced.size >= announcedRememberedMax) announced.delete(announced.keys().next().value!)
  announced.set(from, http)
}

interface Settings {
  readonly group: string
  readonly self: string
  readonly http: string | undefined
  readonly listen: Address
  readonly codec: Codec
  readonly peerQueueCapacityMax: number
  readonly inboundCapacityMax: number
  readonly frameBytesMax: number
  readonly connectTimeoutMs: number
}

const settingsOf = (options: TcpTransportOptions): Settings => ({
  group: options.group,
  self: options.self,
  http: options.http,
  listen: options.listen,
  codec: options.codec ?? jsonCodec,
  peerQueueCapacityMax: options.peerQueueCapacityMax ?? 1024,
  inboundCapacityMax: options.inboundCapacityMax ?? 4096,
  frameBytesMax: options.frameBytesMax ?? frameBytesMaxDefault,
  connectTimeoutMs: options.connectTimeoutMs ?? 2000
})

/** What the fibers of one transport share. `faults` is undefined unless injection is on. */
interface Env {
  readonly settings: Settings
  readonly delivery: InboundDelivery
  readonly faults: Ref.Ref<Faults> | undefined
  /** Nodes of other groups already refused, so each is warned about once, not per retry. */
  readonly refused: Ref.Ref<ReadonlySet<string>>
  /** The HTTP addresses peers of this group announced in their handshakes (Transport.peerHttp). */
  readonly announced: Map<string, string>
  /** Forks into the transport's scope, so closing the layer stops every connection. */
  readonly fork: (effect: Effect.Effect<void>) => void
}

/** A message waiting for its peer's connection; `dueAtMs` > 0 when a fault delays it. */
interface Outgoing {
  readonly message: Message
  readonly dueAtMs: number
}

/** Provides Transport and TransportControl; fails with TransportListenError if it cannot listen. */
export const layer = (
  options: TcpTransportOptions
): Layer.Layer<Transport | TransportControl, TransportListenError> => Layer.scopedContext(make(options))

const make = (options: TcpTransportOptions) =>
  Effect.gen(function*() {
    const settings = settingsOf(options)
    const delivery = yield* InboundDelivery.make(settings.inboundCapacityMax)
    const faults = options.faultInjection === true ? yield* Ref.make(noFaults) : undefined
    const run = yield* FiberSet.makeRuntime<never>()
    // The runtime keeps the flags of where the layer is built, perhaps an uninterruptible
    // acquire; connection fibers must stay interruptible so closing the layer stops them.
    const fork = (effect: Effect.Effect<void>) => void run(Effect.interruptible(effect))
    const refused = yield* Ref.make<ReadonlySet<string>>(new Set())
    const env: Env = { settings, delivery, faults, refused, announced: new Map(), fork }
    yield* listen(settings.listen, (socket) => env.fork(serve(env, socket))).pipe(
      Effect.mapError((error) => new TransportListenError({ ...settings.listen, reason: error.reason }))
    )
    yield* Effect.logDebug(`listening on ${settings.listen.host}:${settings.listen.port}`)
    const sendNow = yield* makeSend(env)
    const send = (messages: ReadonlyArray<Message>) => Effect.suspend(() => sendNow(messages) ?? Effect.void)
    const peerHttp = () => env.announced
    return Context.make(Transport, { send, sendNow, inbound: delivery.inbound, deliverTo: delivery.deliverTo, peerHttp }).pipe(
      Context.add(TransportControl, makeControl(faults))
    )
  }).pipe(Effect.annotateLogs({ node: options.self, component: "transport" }))

// --- Outbound: one link (a queue and a connection fiber) per peer, created on first send.

/**
 * One peer's outbound side. `socket` is its connection once the handshake is written, and
 * undefined while it (re)connects. A send finds it idle (nothing queued, the kernel taking
 * writes) most of the time and writes at once, in the sender's turn; otherwise, or when faults
 * can be injected, the messages join the queue that the connection's fiber writes from, so
 * nothing overtakes what is queued. Writing at once spares a fiber wake-up per send.
 */
interface Link {
  readonly queue: Mailbox.Mailbox<Outgoing>
  socket: net.Socket | undefined
  /** The connection's fiber took a batch it has not finished writing. */
  holding: boolean
}

const makeSend = (env: Env) =>
  Effect.gen(function*() {
    const links = new Map<string, Link>()
    const creating = yield* Effect.makeSemaphore(1)
    const linkTo = (peer: string) =>
      Effect.suspend(() => {
        const existing = links.get(peer)
        if (existing !== undefined) return Effect.succeed(existing)
        // A second sender to a new peer waits for the first and finds its link.
        return creating.withPermits(1)(
          Effect.suspend(() => {
            const made = links.get(peer)
            return made !== undefined ? Effect.succeed(made) : addLink(env, links, peer)
          })
        )
      })
    const enqueue = (peer: string, messages: ReadonlyArray<Message>) =>
      Effect.flatMap(dueAt(env, peer), (dueAtMs) => {
        if (dueAtMs === undefined) return Effect.void
        return Effect.map(linkTo(peer), (link) => {
          for (const message of messages) link.queue.unsafeOffer({ message, dueAtMs })
        })
      })
    return (messages: ReadonlyArray<Message>): Effect.Effect<void> | undefined => {
      let rest: Array<[string, Array<Message>]> | undefined
      for (const [peer, batch] of byPeer(messages)) {
        const link = env.faults === undefined ? links.get(peer) : undefined
        if (link === undefined || !writeNow(env.settings, link, batch)) (rest ??= []).push([peer, batch])
      }
      if (rest === undefined) return undefined
      return Effect.forEach(rest, ([peer, batch]) => enqueue(peer, batch), { discard: true })
    }
  })

/** Writes `batch` at once if the link is up and idle; false when it must be queued instead. */
const writeNow = (settings: Settings, link: Link, batch: ReadonlyArray<Message>): boolean => {
  const socket = link.socket
  if (socket === undefined || link.holding || socket.destroyed || socket.writableNeedDrain) return false
  if (Option.getOrElse(link.queue.unsafeSize(), () => 1) > 0) return false
  const { buffers, oversized } = encodeBatch(settings.codec, batch, settings.frameBytesMax)
  // The connection's fiber drops and logs what is too large.
  if (oversized > 0) return false
  socket.cork()
  for (const buffer of buffers) socket.write(buffer)
  socket.uncork()
  return true
}

/** Messages grouped by receiver, each group in the order given, to queue each group at once. */
const byPeer = (messages: ReadonlyArray<Message>): Map<string, Array<Message>> => {
  const groups = new Map<string, Array<Message>>()
  for (const message of messages) {
    const group = groups.get(message.to)
    if (group === undefined) groups.set(message.to, [message])
    else group.push(message)
  }
  return groups
}

// A Mailbox (an array), not a Queue, as for what arrives: see InboundDelivery.
const addLink = (env: Env, links: Map<string, Link>, peer: string) =>
  Effect.map(Mailbox.make<Outgoing>({ capacity: env.settings.peerQueueCapacityMax, strategy: "sliding" }), (queue) => {
    const link: Link = { queue, socket: undefined, holding: false }
    links.set(peer, link)
    env.fork(runLink(env, peer, link))
    return link
  })

/** When messages to `peer` may leave: undefined if a fault drops them, 0 for at once. */
const dueAt = (env: Env, peer: string): Effect.Effect<number | undefined> => {
  if (env.faults === undefined) return Effect.succeed(0)
  return Effect.flatMap(Ref.get(env.faults), (faults) => {
    if (isBlocked(faults, peer)) return Effect.succeed(undefined)
    const delayMs = delayMsOf(faults, peer)
    return delayMs > 0 ? Effect.map(Clock.currentTimeMillis, (now) => now + delayMs) : Effect.succeed(0)
  })
}

type LinkStatus = "unknown" | "up" | "down"

/** Connects, carries the queue until the connection ends, backs off, and again, forever. */
const runLink = (env: Env, peer: string, link: Link) =>
  Effect.gen(function*() {
    const status = yield* Ref.make<LinkStatus>("unknown")
    const driver = yield* Schedule.driver(reconnectBackoff)
    const backOff = (healthy: boolean) =>
      Effect.zipRight(healthy ? driver.reset : Effect.void, Effect.ignore(driver.next(undefined)))
    return yield* Effect.forever(
      session(env, peer, link, status).pipe(
        Effect.tap(() => markDown(env, peer, status)),
        Effect.flatMap(backOff)
      )
    )
  }).pipe(Effect.annotateLogs({ peer }))

/**
 * One connection's life: returns once it has ended (or could not be made), with whether it
 * lasted long enough to count as healthy.
 */
const session = (env: Env, peer: string, link: Link, status: Ref.Ref<LinkStatus>) =>
  Effect.gen(function*() {
    const address = parseAddress(peer)
    if (address === undefined) return yield* new SocketError({ reason: "not an ip:port address" })
    const socket = yield* connect(address, env.settings.connectTimeoutMs)
    yield* Ref.set(status, "up")
    const upSinceMs = yield* Clock.currentTimeMillis
    const ended = yield* Effect.either(Effect.raceFirst(converse(env, socket, link), awaitClose(socket)))
    const reason = Either.isLeft(ended) ? ended.left.reason : "closed by the peer"
    yield* Effect.logDebug(`connection ended: ${reason}`)
    return (yield* Clock.currentTimeMillis) - upSinceMs >= healthyConnectionMs
  }).pipe(
    Effect.scoped,
    Effect.catchAll((error) => Effect.as(Effect.logDebug(`connect failed: ${error.reason}`), false))
  )

/** Reports the peer down once per outage, however many connection attempts fail during it. */
const markDown = (env: Env, peer: string, status: Ref.Ref<LinkStatus>) =>
  Effect.flatMap(Ref.getAndSet(status, "down"), (previous) =>
    previous === "down"
      ? Effect.void
      : Effect.zipRight(Effect.sync(() => env.delivery.offer({ _tag: "PeerDown", peer })), Effect.logInfo("peer unreachable")))

const framed = (payload: Buffer): Array<Buffer> => [frameHeader(payload.length), payload]

/** The handshake, then every queued message, batch after batch, until writing fails. */
const converse = (env: Env, socket: net.Socket, link: Link) => {
  const { codec, frameBytesMax, group, http, self } = env.settings
  const pump = Effect.map(link.queue.takeAll, ([batch]) => {
    link.holding = true
    return batch
  }).pipe(
    Effect.tap(holdUntilDue),
    Effect.map((batch) => encodeBatch(codec, Chunk.map(batch, (o) => o.message), frameBytesMax)),
    Effect.tap(({ oversized }) =>
      oversized === 0
        ? Effect.void
        : Effect.logError(`dropped ${oversized} message(s) over the frame maximum of ${frameBytesMax} bytes`)),
    Effect.flatMap(({ buffers }) => writeAll(socket, buffers)),
    Effect.ensuring(Effect.sync(() => {
      link.holding = false
    }))
  )
  const up = Effect.sync(() => {
    link.socket = socket
  })
  const down = Effect.sync(() => {
    if (link.socket === socket) link.socket = undefined
  })
  return writeAll(socket, framed(encodeHello(codec, http === undefined ? { group, from: self } : { group, from: self, http }))).pipe(
    Effect.zipRight(up),
    Effect.zipRight(Effect.forever(pump)),
    Effect.ensuring(down)
  )
}

/**
 * Everything queued goes out in one write: under load a batch holds many messages, which is
 * the pipelining; when idle it holds one and leaves at once. A message too large for a frame
 * is a bug of its producer (a snapshot chunk too big); sending it would only make the
 * receiver drop the connection, so it is dropped here.
 */
const encodeBatch = (codec: Codec, batch: Iterable<Message>, frameBytesMax: number) => {
  const buffers: Array<Buffer> = []
  let oversized = 0
  for (const message of batch) {
    const payload = encodeMessage(codec, message)
    if (payload.length > frameBytesMax) oversized++
    else buffers.push(frameHeader(payload.length), payload)
  }
  return { buffers, oversized }
}

/** A delayed message holds back the ones queued after it, so delays never reorder. */
const holdUntilDue = (batch: Chunk.Chunk<Outgoing>) => {
  let dueAtMs = 0
  for (const item of batch) dueAtMs = Math.max(dueAtMs, item.dueAtMs)
  if (dueAtMs === 0) return Effect.void
  return Effect.flatMap(Clock.currentTimeMillis, (now) => (dueAtMs > now ? Effect.sleep(dueAtMs - now) : Effect.void))
}

// --- Inbound: one fiber per accepted connection.

/**
 * Reads the handshake, refuses another group, then delivers messages until the peer closes.
 * A frame that is too large or does not decode means a broken or hostile peer: the
 * connection is dropped (the peer reconnects if it is a member).
 */
const serve = (env: Env, socket: net.Socket) =>
  Effect.gen(function*() {
    const decoder = new FrameDecoder(env.settings.frameBytesMax)
    const next = readFrames(socket, decoder)
    const [first, ...rest] = yield* next
    const hello = yield* decodeHello(env.settings.codec, first)
    if (hello.group !== env.settings.group) return yield* refuse(env, hello)
    if (hello.http !== undefined && hello.from !== env.settings.self) rememberAnnounced(env.announced, hello.from, hello.http)
    yield* deliver(env, hello.from, rest)
    if (env.faults === undefined) return yield* deliverAsRead(env, hello.from, socket, decoder)
    return yield* Effect.forever(Effect.flatMap(next, (frames) => deliver(env, hello.from, frames)))
  }).pipe(
    Effect.catchTags({
      ConnectionEnded: () => Effect.void,
      FrameTooLarge: (error) => Effect.logWarning(`dropping the connection: ${error.message}`),
      InvalidFrame: (error) => Effect.logWarning(`dropping the connection: ${error.message}`)
    }),
    Effect.ensuring(Effect.sync(() => socket.destroy())),
    Effect.annotateLogs({ remote: `${socket.remoteAddress}:${socket.remotePort}` })
  )

/** Logs a refused node of another group: a warning the first time, then at debug level. */
const refuse = (env: Env, hello: Hello) => {
  const key = `${hello.group} ${hello.from}`
  return Effect.flatMap(
    Ref.modify(env.refused, (seen): [boolean, ReadonlySet<string>] =>
      seen.has(key) || seen.size >= refusedRememberedMax ? [false, seen] : [true, new Set(seen).add(key)]),
    (first) => {
      const text = `refused a connection from ${hello.from} of group ${hello.group}`
      return first ? Effect.logWarning(text) : Effect.logDebug(text)
    }
  )
}

/** The next frames, at least one; reads as many chunks as it takes to complete one. */
const readFrames = (
  socket: net.Socket,
  decoder: FrameDecoder
): Effect.Effect<Array<Buffer>, ConnectionEnded | FrameTooLarge> =>
  Effect.flatMap(readChunk(socket), (chunk) =>
    Option.isNone(chunk)
      ? Effect.fail(new ConnectionEnded())
      : Effect.flatMap(decoder.push(chunk.value), (frames) =>
        frames.length > 0 ? Effect.succeed(frames) : readFrames(socket, decoder)))

/**
 * Without faults to apply, what a peer sends is read, decoded and delivered in the socket's
 * 'readable' callback, as `deliver` would: no fiber is woken for each read. Each callback reads
 * whatever the socket holds, as one pulled read did. Fails as `readFrames` and `deliver` do:
 * when the connection ends, or with the first frame that is too large or does not decode (the
 * frames read with it are not delivered).
 */
const deliverAsRead = (
  env: Env,
  peer: string,
  socket: net.Socket,
  decoder: FrameDecoder
): Effect.Effect<never, ConnectionEnded | FrameTooLarge | InvalidFrame> =>
  Effect.async<never, ConnectionEnded | FrameTooLarge | InvalidFrame>((resume) => {
    let stopped = false
    const stop = (error: ConnectionEnded | FrameTooLarge | InvalidFrame) => {
      if (stopped) return
      stopped = true
      cleanup()
      resume(Effect.fail(error))
    }
    const onReadable = () => {
      for (let chunk: Buffer | null = socket.read(); chunk !== null && !stopped; chunk = socket.read()) {
        const frames = decoder.push(chunk)
        if (Either.isLeft(frames)) return stop(frames.left)
        const messages = decodeFrames(env, frames.right)
        if (Either.isLeft(messages)) return stop(messages.left)
        const foreign = offerOurs(env, messages.right)
        if (foreign > 0) env.fork(droppedForeign(peer, foreign))
      }
      if (socket.readableEnded || socket.destroyed) stop(new ConnectionEnded())
    }
    const onEnd = () => stop(new ConnectionEnded())
    const cleanup = () => {
      socket.off("readable", onReadable)
      socket.off("end", onEnd)
      socket.off("close", onEnd)
    }
    socket.on("readable", onReadable)
    socket.on("end", onEnd)
    socket.on("close", onEnd)
    onReadable()
    return Effect.sync(cleanup)
  })

/** Decodes every frame (one bad frame condemns the connection), then applies faults and group. */
const deliver = (env: Env, peer: string, frames: ReadonlyArray<Buffer>) =>
  Effect.gen(function*() {
    if (frames.length === 0) return
    const messages = yield* decodeFrames(env, frames)
    if (!(yield* admit(env, peer))) return
    const foreign = offerOurs(env, messages)
    if (foreign > 0) yield* droppedForeign(peer, foreign)
  })

const decodeFrames = (env: Env, frames: ReadonlyArray<Buffer>): Either.Either<Array<Message>, InvalidFrame> =>
  Either.all(frames.map((frame) => decodeMessage(env.settings.codec, frame)))

/** Hands this group's messages to the node, in order; returns how many of another group it dropped. */
const offerOurs = (env: Env, messages: ReadonlyArray<Message>): number => {
  let foreign = 0
  for (const message of messages) {
    if (message.group === env.settings.group) env.delivery.offer({ _tag: "Message", message })
    else foreign++
  }
  return foreign
}

const droppedForeign = (peer: string, count: number) => Effect.logDebug(`dropped ${count} messages of another group from ${peer}`)

/**
 * Whether traffic from `peer` passes the injected faults, after holding it back by the peer's
 * delay. The delay is counted from when the batch was read, so under load a message may wait
 * up to twice the delay: enough for a slow-link fault, and order is kept.
 */
const admit = (env: Env, peer: string): Effect.Effect<boolean> => {
  if (env.faults === undefined) return Effect.succeed(true)
  return Effect.flatMap(Ref.get(env.faults), (faults) => {
    if (isBlocked(faults, peer)) return Effect.succeed(false)
    const delayMs = delayMsOf(faults, peer)
    return delayMs > 0 ? Effect.as(Effect.sleep(delayMs), true) : Effect.succeed(true)
  })
}
