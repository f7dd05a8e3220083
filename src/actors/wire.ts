import { Data, Either, ParseResult, Schema } from "effect"
import { decodePlainMessage, Message } from "../domain/raft/messages.js"
import { totalDecoder } from "../domain/totalDecode.js"

/** Turns a value into frame payload bytes and back. Both ends of a connection must agree. */
export interface Codec {
  readonly name: string
  readonly encode: (value: unknown) => Buffer
  /** May throw on malformed bytes; callers turn that into an InvalidFrame. */
  readonly decode: (bytes: Buffer) => unknown
}

/**
 * The default codec. JSON keeps frames readable in a packet capture and needs no dependency;
 * bench/transport.ts compares it with msgpack.
 */
export const jsonCodec: Codec = {
  name: "json",
  encode: (value) => Buffer.from(JSON.stringify(value), "utf8"),
  decode: (bytes) => JSON.parse(bytes.toString("utf8"))
}

/**
 * The first frame on every connection: which group the connecting node belongs to and who it
 * is. A node closes connections from another group so two clusters sharing hosts never mix.
 * `http`, its HTTP API's address, lets the members reach each other's HTTP (history pages)
 * without having seen each other lead; optional, so nodes without it still connect.
 */
export const Hello = Schema.Struct({ group: Schema.String, from: Schema.String, http: Schema.optional(Schema.String) })
export type Hello = typeof Hello.Type

/** A frame that does not decode to what the protocol expects at that point. */
export class InvalidFrame extends Data.TaggedError("InvalidFrame")<{ readonly reason: string }> {
  override get message(): string {
    return `invalid frame: ${this.reason}`
  }
}

export const encodeHello = (codec: Codec, hello: Hello): Buffer => codec.encode(hello)

/**
 * Messages are written as they are: the Message schema has no transformations, so its encoded
 * form is the value itself and running the encoder would only cost time. The annotation below
 * stops compiling if a transformation is ever added to the schema.
 */
export const encodeMessage = (codec: Codec, message: Message): Buffer => {
  const encoded: typeof Message.Encoded = message
  return codec.encode(encoded)
}

const decodeHelloEither = totalDecoder(Hello)
/**
 * Frames come from the network, so every message is checked: replication's field by field
 * (decodePlainMessage), the rest against the schema. Measured before the plain path: the schema's
 * check cost about as much as JSON.parse itself (~1 us for a heartbeat, ~24 us for an
 * AppendEntries of 64 entries of 200 bytes) and a tenth of a follower's allocation.
 */
const decodeMessageEither = totalDecoder(Message)

/** A log line needs one reason, not the whole tree (which quotes every member of the union). */
const brief = (text: string): string => (text.length > 200 ? `${text.slice(0, 200)}...` : text)

const firstIssue = (error: ParseResult.ParseError): string => {
  const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
  return brief(issue === undefined ? error.message : `${issue.path.join(".") || "frame"}: ${issue.message}`)
}

const parse = (codec: Codec, bytes: Buffer): Either.Either<unknown, InvalidFrame> =>
  Either.try({
    try: () => codec.decode(bytes),
    catch: (error) => new InvalidFrame({ reason: brief(`${codec.name}: ${String(error)}`) })
  })

export const decodeHello = (codec: Codec, bytes: Buffer): Either.Either<Hello, InvalidFrame> =>
  Either.flatMap(parse(codec, bytes), (value) =>
    Either.mapLeft(
      decodeHelloEither(value),
      (error) => new InvalidFrame({ reason: `handshake: ${firstIssue(error)}` })
    ))

/** The schema's decoding of a frame's value: the reference decodePlainMessage is held to. */
export const decodeMessageValueBySchema = (value: unknown): Either.Either<Message, InvalidFrame> =>
  Either.mapLeft(decodeMessageEither(value), (error) => new InvalidFrame({ reason: firstIssue(error) }))

/** A frame's value as a Message: replication's messages by hand when they are in shape (messages.ts). */
export const decodeMessageValue = (value: unknown): Either.Either<Message, InvalidFrame> => {
  const plain = decodePlainMessage(value)
  return plain !== undefined ? Either.right(plain) : decodeMessageValueBySchema(value)
}

export const decodeMessage = (codec: Codec, bytes: Buffer): Either.Either<Message, InvalidFrame> =>
  Either.flatMap(parse(codec, bytes), decodeMessageValue)
