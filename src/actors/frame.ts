import { Data, Either } from "effect"

/**
 * Frames on a TCP stream: a 4-byte big-endian payload length, then the payload. The length
 * prefix lets the reader cut the byte stream back into the writer's messages without scanning
 * the payload.
 */
export const frameHeaderBytes = 4

/** Large enough for a snapshot chunk, small enough that a garbage length cannot exhaust memory. */
export const frameBytesMaxDefault = 64 * 1024 * 1024

/** A peer announced a frame longer than the reader accepts: the stream is garbage or hostile. */
export class FrameTooLarge extends Data.TaggedError("FrameTooLarge")<{
  readonly length: number
  readonly max: number
}> {
  override get message(): string {
    return `frame of ${this.length} bytes exceeds the maximum of ${this.max}`
  }
}

/** The header to write before `payload`; written apart so the payload is never copied. */
export const frameHeader = (payloadLength: number): Buffer => {
  const header = Buffer.allocUnsafe(frameHeaderBytes)
  header.writeUInt32BE(payloadLength, 0)
  return header
}

/**
 * Cuts a byte stream into frame payloads. Chunks are kept as received and joined only when a
 * frame spans them, so a large frame arriving in many chunks is copied once, not once per chunk.
 */
export class FrameDecoder {
  private chunks: Array<Buffer> = []
  private buffered = 0
  private expected: number | undefined = undefined

  constructor(readonly frameBytesMax: number = frameBytesMaxDefault) {}

  /** Adds `chunk` and returns every frame now complete, in order. */
  push(chunk: Buffer): Either.Either<Array<Buffer>, FrameTooLarge> {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    const frames: Array<Buffer> = []
    for (;;) {
      if (this.expected === undefined) {
        if (this.buffered < frameHeaderBytes) break
        const length = this.take(frameHeaderBytes).readUInt32BE(0)
        if (length > this.frameBytesMax) return Either.left(new FrameTooLarge({ length, max: this.frameBytesMax }))
        this.expected = length
      }
      if (this.buffered < this.expected) break
      frames.push(this.take(this.expected))
      this.expected = undefined
    }
    return Either.right(frames)
  }

  /** Removes the next `n` buffered bytes; a view when they lie in one chunk, a copy otherwise. */
  private take(n: number): Buffer {
    this.buffered -= n
    const first = this.chunks[0]
    if (first !== undefined && first.length >= n) {
      if (first.length === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
      return first.subarray(0, n)
    }
    const joined = Buffer.concat(this.chunks)
    const rest = joined.subarray(n)
    this.chunks = rest.length > 0 ? [rest] : []
    return joined.subarray(0, n)
  }
}
