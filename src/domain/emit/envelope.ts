import { Either, Schema } from "effect"
import type { ParseResult } from "effect"
import { totalDecoder } from "../totalDecode.js"
import { BadRequest, describe, excerpt, firstIssue, pathText } from "./errors.js"

/** Every job_type the Emit endpoint knows; anything else is "Unrecongnized job type". */
export const jobTypes = [
  "raft_mission",
  "get_status",
  "get_cluster_mgr_status",
  "create_machine",
  "delete_machine",
  "update_machine",
  "get_machines",
  "create_cluster",
  "delete_cluster",
  "add_shards",
  "delete_shard",
  "add_comps",
  "delete_comp",
  "add_nodes",
  "delete_node",
  "control_instance",
  "manual_switch",
  "rebuild_node",
  "expand_cluster",
  "manual_backup_cluster",
  "cluster_restore",
  "get_meta_summary",
  "get_cluster_detail",
  "get_cluster_summary",
  "get_backup_storage",
  "get_variable",
  "set_variable",
  "logical_backup",
  "logical_restore",
  "table_repartition"
] as const

/** A JSON object as JSON.parse builds it: its keys are own properties, never the prototype. */
export type JsonObject = { readonly [key: string]: unknown }

export const isJsonObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** Klustron's own texts (misspelling included), so its clients see what they expect. */
const jobTypeMessage = (actual: unknown): string =>
  typeof actual === "string" && actual.length > 0
    ? `Unrecongnized job type: ${excerpt(actual)}`
    : "The field `job_type` in Body must be a non empty valid string"

export const JobType = Schema.Literal(...jobTypes).annotations({
  message: (issue) => ({ message: jobTypeMessage(issue.actual), override: true })
})
export type JobType = typeof JobType.Type

/** Klustron sends every value as a string; a number is taken as its decimal text. */
export const NumberAsText = Schema.transform(Schema.Number.pipe(Schema.finite()), Schema.String, {
  strict: true,
  decode: (n) => String(n),
  encode: (s) => Number(s)
})

const bodyText = (field: string) =>
  Schema.Union(Schema.String, NumberAsText).annotations({
    message: (issue) => ({
      message: `The field \`${field}\` in Body must be a string, got ${describe(issue.actual)}`,
      override: true
    })
  })

/**
 * A key that would reach an object's prototype if copied by assignment (as Schema.Record does).
 * No Klustron request has one, so it is refused rather than silently dropped.
 */
const forbiddenKey = "__proto__"

/** `paras` is kept as parsed: each job's schema picks its own fields from it. */
export const Paras = Schema.declare(isJsonObject, {
  identifier: "Paras",
  message: (issue) => ({
    message: `The field \`paras\` in Body must be a JSON object, got ${describe(issue.actual)}`,
    override: true
  })
}).pipe(
  Schema.filter((paras) =>
    Object.hasOwn(paras, forbiddenKey) ? `The key \`${forbiddenKey}\` is not allowed in \`paras\`` : true
  )
)

/** The Emit request body. Only `job_type` is mandatory; the client's job_id only names a job to query. */
export const EmitRequest = Schema.Struct({
  job_type: Schema.propertySignature(JobType).annotations({
    missingMessage: () => "missing `job_type` key-value pair in the request body"
  }),
  version: Schema.optionalWith(bodyText("version"), { exact: true }),
  job_id: Schema.optionalWith(bodyText("job_id"), { exact: true }),
  timestamp: Schema.optionalWith(bodyText("timestamp"), { exact: true }),
  user_name: Schema.optionalWith(bodyText("user_name"), { exact: true }),
  paras: Schema.optionalWith(Paras, { exact: true, default: () => ({}) })
})
export type EmitRequest = typeof EmitRequest.Type

const decodeRequest = totalDecoder(EmitRequest, { errors: "first" })

const fromParseError = (error: ParseResult.ParseError): BadRequest =>
  new BadRequest({ info: firstIssue(error).message })

const knownJobTypes: ReadonlySet<string> = new Set(jobTypes)
const textFields = ["version", "job_id", "timestamp", "user_name"] as const

/**
 * The EmitRequest schema's result for a body it accepts as it stands (every field present has
 * its decoded type: a known job_type, texts as strings or numbers, paras an object), built
 * without running the schema's parser; undefined for anything else, which the schema decodes
 * and, when it refuses, words the error for. The parser cost the leader several times
 * JSON.parse per request; test/domain/emit.test.ts checks that both give the same request,
 * keys in the same order, on generated bodies.
 */
const decodePlainRequest = (body: JsonObject): EmitRequest | undefined => {
  const jobType = Object.hasOwn(body, "job_type") ? body.job_type : undefined
  if (typeof jobType !== "string" || !knownJobTypes.has(jobType)) return undefined
  const request: { -readonly [K in keyof EmitRequest]?: EmitRequest[K] } = { job_type: jobType as JobType }
  for (const field of textFields) {
    if (!Object.hasOwn(body, field)) continue
    const value = body[field]
    if (typeof value === "string") request[field] = value
    else if (typeof value === "number" && Number.isFinite(value)) request[field] = String(value)
    else return undefined
  }
  if (!Object.hasOwn(body, "paras")) request.paras = {}
  else if (isJsonObject(body.paras) && !Object.hasOwn(body.paras, forbiddenKey)) request.paras = body.paras
  else return undefined
  return request as EmitRequest
}

/** What no schema decodes: a body that is not an object, or has an own `__proto__` key. */
const refuseShape = (body: unknown): BadRequest | undefined => {
  if (!isJsonObject(body)) return new BadRequest({ info: `The request body must be a JSON object, got ${describe(body)}` })
  if (Object.hasOwn(body, forbiddenKey)) {
    return new BadRequest({ info: `The key \`${forbiddenKey}\` is not allowed in the request body` })
  }
  return undefined
}

/** Refuses what no schema decodes, then tries the plain path first (or not) and the schema after it. */
const decodeEmitValueWith = (plainFirst: boolean) => (body: unknown): Either.Either<EmitRequest, BadRequest> => {
  const refused = refuseShape(body)
  if (refused !== undefined) return Either.left(refused)
  const plain = plainFirst ? decodePlainRequest(body as JsonObject) : undefined
  return plain !== undefined ? Either.right(plain) : Either.mapLeft(decodeRequest(body), fromParseError)
}

/** The schema alone, without the plain path: the reference the tests hold the plain path to. */
export const decodeEmitValueBySchema = decodeEmitValueWith(false)

/** Turns any parsed body into a request or a Klustron-shaped error naming the field. */
export const decodeEmitValue = decodeEmitValueWith(true)

/** An escape of a UTF-16 surrogate; only escapes can put one in a parsed string (see below). */
const surrogateEscape = /\\u[dD][89a-fA-F]/
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** A value met while walking a parsed body, linked to its parent so a path is built only once. */
interface Visit {
  readonly value: unknown
  readonly key: PropertyKey | undefined
  readonly parent: Visit | undefined
}

const pathOf = (visit: Visit): Array<PropertyKey> => {
  const path: Array<PropertyKey> = []
  for (let v: Visit | undefined = visit; v?.key !== undefined; v = v.parent) path.push(v.key)
  return path.reverse()
}

/**
 * Where the first key or string holding a lone UTF-16 surrogate is, with that surrogate. Such a
 * string is not Unicode text: it cannot be written as UTF-8, and strict JSON readers refuse the
 * escape (in a reply too, where an error text would echo it). Iterative and linear, since a
 * hostile body may nest deeply.
 */
const findLoneSurrogate = (
  value: unknown
): { readonly path: Array<PropertyKey>; readonly unit: number; readonly inKey: boolean } | undefined => {
  const stack: Array<Visit> = [{ value, key: undefined, parent: undefined }]
  const lone = (text: string) => loneSurrogate.exec(text)?.[0].charCodeAt(0)
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const v = next.value
    if (typeof v === "string") {
      const unit = lone(v)
      if (unit !== undefined) return { path: pathOf(next), unit, inKey: false }
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], key: i, parent: next })
    } else if (typeof v === "object" && v !== null) {
      const keys = Object.keys(v)
      for (const key of keys) {
        const unit = lone(key)
        if (unit !== undefined) return { path: pathOf(next), unit, inKey: true }
      }
      for (let i = keys.length - 1; i >= 0; i--) {
        stack.push({ value: (v as Record<string, unknown>)[keys[i]], key: keys[i], parent: next })
      }
    }
  }
  return undefined
}

const parseJson = (text: string): Either.Either<unknown, BadRequest> =>
  Either.flatMap(
    Either.try({
      try: (): unknown => JSON.parse(text),
      catch: (e) => new BadRequest({ info: `JSON parse error: ${excerpt(e instanceof Error ? e.message : String(e))}` })
    }),
    (value) => {
      // The body's bytes were decoded as UTF-8 with replacement, so without an escape no string holds a surrogate.
      const found = surrogateEscape.test(text) ? findLoneSurrogate(value) : undefined
      if (found === undefined) return Either.right(value)
      // The path's keys were checked before their values, so naming it echoes no surrogate.
      const at = found.path.length > 0 ? excerpt(pathText(found.path)) : undefined
      const where = found.inKey ? (at ? `in a key of ${at}` : "in a top-level key") : at ? `in ${at}` : "as the body"
      const unit = `U+${found.unit.toString(16).toUpperCase()}`
      return Either.left(new BadRequest({ info: `JSON parse error: a lone UTF-16 surrogate (${unit}) ${where} is not Unicode text` }))
    }
  )

/** Turns any request body text into a request or a Klustron-shaped error. */
export const decodeEmitBody = (text: string): Either.Either<EmitRequest, BadRequest> =>
  Either.flatMap(parseJson(text), decodeEmitValue)
