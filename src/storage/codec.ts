import { Either, ParseResult, Schema } from "effect"
import { Configuration, EntryPayload } from "../domain/raft/types.js"
import { PersistenceError } from "./PersistenceError.js"

// Rows hold JSON text of the domain schemas' encoded forms, so the schemas stay the single
// source of truth for what is on disk; what is read back is decoded through them.
const PayloadJson = Schema.parseJson(EntryPayload)
const ConfigurationJson = Schema.parseJson(Configuration)

/**
 * A payload written as it is: EntryPayload has no transformations, so its encoded form is the
 * value itself, and running the encoder cost about 1.3% of a node's CPU under load (every entry
 * is stored on every node). The annotation stops compiling if a transformation is ever added;
 * test/storage/RaftStorage.test.ts holds this equal to the Schema encoding.
 */
export const encodePayload = (payload: EntryPayload): string => {
  const encoded: typeof EntryPayload.Encoded = payload
  return JSON.stringify(encoded)
}
/** The Schema encoding, which encodePayload must equal. */
export const encodePayloadBySchema: (payload: EntryPayload) => string = Schema.encodeSync(PayloadJson)
export const encodeConfiguration: (config: Configuration) => string =
  Schema.encodeSync(ConfigurationJson)

const decodePayloadEither = Schema.decodeEither(PayloadJson)
const decodeConfigurationEither = Schema.decodeEither(ConfigurationJson)

/** Disk contents are untrusted: a row that does not decode is corruption, reported with where. */
const orCorrupt = <A>(result: Either.Either<A, ParseResult.ParseError>, where: string): A =>
  Either.getOrThrowWith(
    result,
    (error) =>
      new PersistenceError({ operation: "load", reason: `corrupt ${where}`, cause: error })
  )

export const decodePayload = (json: string, index: number): EntryPayload =>
  orCorrupt(decodePayloadEither(json), `payload of entry ${index}`)

export const decodeConfiguration = (json: string): Configuration =>
  orCorrupt(decodeConfigurationEither(json), "snapshot configuration")
