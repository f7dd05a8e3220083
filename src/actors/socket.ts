import * as net from "node:net"
import { Data, Effect, Option, type Scope } from "effect"

/**
 * node:net sockets as Effects. Every socket gets an 'error' listener the moment it exists: an
 * unhandled 'error' event would crash the process, and the 'close' that follows every error
 * is what the callers watch instead.
 */

export class SocketError extends Data.TaggedError("SocketError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

export interface Address {
  readonly host: string
  readonly port: number
}

/** "ip:port" (or "[ipv6]:port") as a connectable address; undefined when it is not one. */
export const parseAddress = (address: string): Address | undefined => {
  const colon = address.lastIndexOf(":")
  const port = Number(address.slice(colon + 1))
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1")
  const valid = colon > 0 && host.length > 0 && Number.isInteger(port) && port > 0 && port < 65536
  return valid ? { host, port } : undefined
}

const ignoreError = () => {}

const reasonOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/**
 * Listens on `address`, handing every accepted socket to `onConnection`. Closing the scope stops
 * listening, destroys the sockets still open and waits until the port is released, so a
 * successor may bind it at once.
 */
export const listen = (
  address: Address,
  onConnection: (socket: net.Socket) => void
): Effect.Effect<net.Server, SocketError, Scope.Scope> =>
  Effect.suspend(() => {
    const open = new Set<net.Socket>()
    const accept = (socket: net.Socket) => {
      socket.on("error", ignoreError)
      open.add(socket)
      socket.once("close", () => open.delete(socket))
      onConnection(socket)
    }
    return Effect.acquireRelease(startServer(address, accept), (server) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        for (const socket of open) socket.destroy()
      }))
  })

const startServer = (address: Address, accept: (socket: net.Socket) => void) =>
  Effect.async<net.Server, SocketError>((resume) => {
    const server = net.createServer(accept)
    const onError = (error: Error) => resume(Effect.fail(new SocketError({ reason: reasonOf(error) })))
    server.once("error", onError)
    server.listen({ host: address.host, port: address.port }, () => {
      server.off("error", onError)
      // Errors after listening (a failed accept) concern one connection, never the server.
      server.on("error", ignoreError)
      resume(Effect.succeed(server))
    })
  })

/**
 * A connected socket, destroyed when the scope closes. Interrupting a pending connect destroys
 * the half-open socket; a connect that hangs (a peer behind a black hole) fails after
 * `timeoutMs`.
 */
export const connect = (address: Address, timeoutMs: number): Effect.Effect<net.Socket, SocketError, Scope.Scope> =>
  Effect.uninterruptibleMask((restore) =>
    restore(connecting(address, timeoutMs)).pipe(
      Effect.tap((socket) => Effect.addFinalizer(() => Effect.sync(() => socket.destroy())))
    ))

const connecting = (address: Address, timeoutMs: number) =>
  Effect.async<net.Socket, SocketError>((resume) => {
    // No Nagle: the writer batches itself, and Raft heartbeats must not wait 40 ms for an ACK.
    const socket = net.connect({ host: address.host, port: address.port, noDelay: true })
    socket.on("error", ignoreError)
    const fail = (reason: string) => {
      socket.destroy()
      resume(Effect.fail(new SocketError({ reason })))
    }
    const onError = (error: Error) => fail(reasonOf(error))
    const onTimeout = () => fail(`connect timed out after ${timeoutMs} ms`)
    socket.once("error", onError)
    socket.once("timeout", onTimeout)
    socket.setTimeout(timeoutMs)
    socket.once("connect", () => {
      socket.off("error", onError)
      socket.off("timeout", onTimeout)
      socket.setTimeout(0)
      // The peer never writes on this connection; flowing mode lets its FIN surface as 'close'.
      socket.resume()
      resume(Effect.succeed(socket))
    })
    return Effect.sync(() => socket.destroy())
  })

/** Completes once the socket has closed, for whatever reason. */
export const awaitClose = (socket: net.Socket): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (socket.destroyed) return resume(Effect.void)
    const onClose = () => resume(Effect.void)
    socket.once("close", onClose)
    return Effect.sync(() => socket.off("close", onClose))
  })

/**
 * Writes `buffers` as one batch: corked, they leave in one writev system call. Waits for the
 * kernel buffer to drain before returning, so a slow peer holds the writer back (and its queue
 * overflows, dropping the oldest messages) instead of growing memory without bound.
 */
export const writeAll = (socket: net.Socket, buffers: ReadonlyArray<Buffer>): Effect.Effect<void, SocketError> =>
  Effect.suspend(() => {
    if (socket.destroyed) return Effect.fail(new SocketError({ reason: "connection closed" }))
    socket.cork()
    for (const buffer of buffers) socket.write(buffer)
    socket.uncork()
    return socket.writableNeedDrain ? awaitDrain(socket) : Effect.void
  })

const awaitDrain = (socket: net.Socket) =>
  Effect.async<void, SocketError>((resume) => {
    const cleanup = () => {
      socket.off("drain", onDrain)
      socket.off("close", onClose)
    }
    const onDrain = () => {
      cleanup()
      resume(Effect.void)
    }
    const onClose = () => {
      cleanup()
      resume(Effect.fail(new SocketError({ reason: "connection closed while writing" })))
    }
    socket.on("drain", onDrain)
    socket.on("close", onClose)
    return Effect.sync(cleanup)
  })

/**
 * The next chunk the peer sent, or None once the connection has ended or failed. Reading is
 * pulled: the socket stays paused between reads, so a reader that falls behind leaves bytes in
 * the kernel and TCP flow control slows the sender, instead of buffering in memory.
 */
export const readChunk = (socket: net.Socket): Effect.Effect<Option.Option<Buffer>> =>
  Effect.async<Option.Option<Buffer>>((resume) => {
    const attempt = (): boolean => {
      const chunk: Buffer | null = socket.read()
      if (chunk !== null) resume(Effect.succeedSome(chunk))
      else if (socket.readableEnded || socket.destroyed) resume(Effect.succeedNone)
      else return false
      return true
    }
    if (attempt()) return
    const cleanup = () => {
      socket.off("readable", onReadable)
      socket.off("end", onEnd)
      socket.off("close", onEnd)
    }
    const onReadable = () => {
      if (attempt()) cleanup()
    }
    const onEnd = () => {
      cleanup()
      resume(Effect.succeedNone)
    }
    socket.on("readable", onReadable)
    socket.on("end", onEnd)
    socket.on("close", onEnd)
    return Effect.sync(cleanup)
  })
