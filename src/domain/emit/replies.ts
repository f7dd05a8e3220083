import { Schema } from "effect"
import type { ErrorCode } from "./errors.js"

/** The protocol version every reply carries, as Klustron's does. */
export const replyVersion = "1.0"

export const jobStatuses = ["not_started", "ongoing", "done", "failed"] as const
export const JobStatus = Schema.Literal(...jobStatuses)
export type JobStatus = typeof JobStatus.Type

/**
 * An Emit reply. Fields are declared in Klustron's key order (alphabetical), which decoding and
 * the builders below keep, so replies are byte-identical to Klustron's for the same content.
 */
export const EmitReply = Schema.Struct({
  attachment: Schema.Unknown,
  error_code: Schema.String,
  error_info: Schema.String,
  job_id: Schema.optionalWith(Schema.String, { exact: true }),
  status: Schema.Literal("accept", ...jobStatuses),
  version: Schema.String
})
export type EmitReply = typeof EmitReply.Type

/** What a failure reply needs to know of an error; an `EmitError` is one. */
export interface ReplyError {
  readonly code: ErrorCode
  readonly info: string
}

/** An asynchronous job was accepted (and committed) under this id. */
export const accepted = (jobId: string): EmitReply => ({
  attachment: null,
  error_code: "0",
  error_info: "",
  job_id: jobId,
  status: "accept",
  version: replyVersion
})

/** The request failed before any job existed, so the reply names none. */
export const failure = (error: ReplyError): EmitReply => ({
  attachment: null,
  error_code: error.code,
  error_info: error.info,
  status: "failed",
  version: replyVersion
})

/** The answer to get_status: the job's state, its memo as attachment, and why it failed if it did. */
export const jobStatus = (
  jobId: string,
  status: JobStatus,
  attachment: unknown = null,
  error?: ReplyError
): EmitReply => ({
  attachment,
  error_code: error?.code ?? "0",
  error_info: error?.info ?? "",
  job_id: jobId,
  status,
  version: replyVersion
})

/** The answer to a synchronous get_* job: done at once, the result as attachment. */
export const syncResult = (attachment: unknown): EmitReply => ({
  attachment,
  error_code: "0",
  error_info: "",
  status: "done",
  version: replyVersion
})
