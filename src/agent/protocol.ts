import { Either, ParseResult, Schema } from "effect"
import { integerIn, isIpv4, textWhere } from "../domain/emit/commands.js"
import { describe, excerpt, firstIssue, mustBe } from "../domain/emit/errors.js"

/**
 * The node_mgr wire protocol, pure (no I/O): what cluster_mgr sends to an agent's
 * `POST /HttpService/Emit` and what it gets back. Klustron's envelope:
 *
 *   request  {"cluster_mgr_request_id":"..","task_spec_info":"..","job_type":"..","paras":{..}}
 *   reply    {"cluster_mgr_request_id":"..","info":<json or text>,"status":"success"|"failed",
 *             "task_spec_info":".."}
 *
 * Paras values are strings, Klustron style ("port":"57001"); JSON numbers are accepted too.
 * cluster_mgr imports the schemas below; their names are stable.
 */

// ---------------------------------------------------------------------------------------------
// Value schemas for paras. Every leaf says "must be <expected>, got <input>" without echoing
// more than an excerpt of a hostile value.
// ---------------------------------------------------------------------------------------------

/** A dotted-quad IPv4 literal (no host names: SQL and argv only ever carry validated literals). */
export { isIpv4 }

export const PortText = integerIn(1, 65535, "a port number 1..65535")
export const SeqText = integerIn(0, Number.MAX_SAFE_INTEGER, "a non-negative integer")
export const Ipv4 = textWhere("an IPv4 address like 192.168.0.10", isIpv4)

export const instanceKinds = ["storage", "computer"] as const
export const Kind = Schema.Literal(...instanceKinds).annotations(mustBe("storage or computer"))
export type Kind = typeof Kind.Type

/** innodb_buffer_pool_size as MariaDB writes it: digits with an optional K, M or G. */
export const MemorySize = textWhere("a size like 128M (digits, optional K, M or G)", (text) =>
  /^[1-9][0-9]{0,9}[KMGkmg]?$/.test(text)
)

const pathLengthMax = 4096
const pathsCountMax = 64

const AbsolutePath = textWhere(
  "an absolute path",
  (text) => text.startsWith("/") && text.length <= pathLengthMax && !text.includes("\0")
)

/** Klustron sends a list as "a,b"; a JSON array is accepted too. */
export const PathList = Schema.transformOrFail(
  Schema.Union(Schema.String, Schema.Array(Schema.Unknown)),
  Schema.Array(AbsolutePath).pipe(Schema.minItems(1), Schema.maxItems(pathsCountMax)),
  {
    strict: true,
    decode: (input, _, ast) => {
      const items = typeof input === "string" ? input.split(",").filter((p) => p.length > 0) : input
      return items.length > 0 && items.length <= pathsCountMax
        ? ParseResult.succeed(items as ReadonlyArray<string>)
        : ParseResult.fail(new ParseResult.Type(ast, input, `must list 1..${pathsCountMax} paths, got ${describe(input)}`))
    },
    encode: (paths) => ParseResult.succeed(paths.join(","))
  }
).annotations(mustBe(`a list of 1..${pathsCountMax} absolute paths, "a,b" or ["a","b"]`))

const optional = <A, I>(schema: Schema.Schema<A, I>) => Schema.optionalWith(schema, { exact: true })

// ---------------------------------------------------------------------------------------------
// Jobs: one tagged struct per job_type, its fields the decoded paras.
// ---------------------------------------------------------------------------------------------

export const PingPong = Schema.TaggedStruct("ping_pong", { ack_report_seq: optional(SeqText) })
export const ListInstances = Schema.TaggedStruct("list_instances", {})
export const CheckPortIdle = Schema.TaggedStruct("check_port_idle", { port: PortText })
export const GetPathsSpace = Schema.TaggedStruct("get_paths_space", { paths: PathList })
export const InstallStorage = Schema.TaggedStruct("install_storage", {
  port: PortText,
  innodb_buffer_pool_size: optional(MemorySize)
})
export const DeleteStorage = Schema.TaggedStruct("delete_storage", { port: PortText })
export const InstallComputer = Schema.TaggedStruct("install_computer", { port: PortText })
export const DeleteComputer = Schema.TaggedStruct("delete_computer", { port: PortText })
export const controlActions = ["start", "stop", "restart"] as const
export const ControlInstance = Schema.TaggedStruct("control_instance", {
  port: PortText,
  control: Schema.Literal(...controlActions).annotations(mustBe("start, stop or restart")),
  /** Optional guard: the instance at `port` must be of this kind (`type` is accepted as a synonym). */
  kind: optional(Kind),
  type: optional(Kind)
})
export const SetReplica = Schema.TaggedStruct("set_replica", {
  port: PortText,
  primary_host: Ipv4,
  primary_port: PortText
})
export const PromoteReplica = Schema.TaggedStruct("promote_replica", { port: PortText })

export const AgentJob = Schema.Union(
  PingPong,
  ListInstances,
  CheckPortIdle,
  GetPathsSpace,
  InstallStorage,
  DeleteStorage,
  InstallComputer,
  DeleteComputer,
  ControlInstance,
  SetReplica,
  PromoteReplica
)
export type AgentJob = typeof AgentJob.Type
export type JobType = AgentJob["_tag"]

/** Every job_type served; `satisfies` keeps the list and the union in step. */
export const jobTypes = [
  "ping_pong",
  "list_instances",
  "check_port_idle",
  "get_paths_space",
  "install_storage",
  "delete_storage",
  "install_computer",
  "delete_computer",
  "control_instance",
  "set_replica",
  "promote_replica"
] as const satisfies ReadonlyArray<JobType>

/** Klustron node_mgr jobs this agent does not implement: refused by name, not as unknown. */
export const unsupportedJobTypes: ReadonlyArray<string> = [
  "backup_shard",
  "backup_compute",
  "restore_storage",
  "restore_computer",
  "rebuild_node",
  "execute_command"
]

// ---------------------------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------------------------

/** A request on the wire. Only job_type is mandatory. */
export const AgentRequest = Schema.Struct({
  cluster_mgr_request_id: Schema.optionalWith(Schema.String, { default: () => "" }),
  task_spec_info: Schema.optionalWith(Schema.String, { default: () => "" }),
  job_type: Schema.String,
  paras: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Unknown }), { default: () => ({}) })
})
export type AgentRequest = typeof AgentRequest.Type

export const replyStatuses = ["success", "failed"] as const
export const AgentReply = Schema.Struct({
  cluster_mgr_request_id: Schema.String,
  info: Schema.Unknown,
  status: Schema.Literal(...replyStatuses),
  task_spec_info: Schema.String
})
export type AgentReply = typeof AgentReply.Type

// ---------------------------------------------------------------------------------------------
// What the jobs answer (`info` of a success)
// ---------------------------------------------------------------------------------------------

export const instanceStatuses = ["running", "stopped", "dead", "starting"] as const
export const InstanceStatus = Schema.Literal(...instanceStatuses)
export type InstanceStatus = typeof InstanceStatus.Type

/**
 * One database instance the agent manages. status: running (answers `select 1`), starting
 * (its process is alive and has not answered since it was started), stopped (stopped on
 * purpose), dead (no process; the agent restarts it unless stopped on purpose).
 */
export const Instance = Schema.Struct({
  kind: Kind,
  port: Schema.Int,
  status: InstanceStatus,
  stopped_on_purpose: Schema.Boolean,
  pid: Schema.NullOr(Schema.Int),
  restarts: Schema.Int,
  datadir: Schema.String
})
export type Instance = typeof Instance.Type

export const reportEvents = ["restarted", "died", "adopted", "restart_failed"] as const
export const ReportEvent = Schema.Literal(...reportEvents)
export type ReportEvent = typeof ReportEvent.Type

/** Something the agent did or saw on its own; kept until cluster_mgr acknowledges its seq. */
export const Report = Schema.Struct({
  seq: Schema.Int,
  at: Schema.Number,
  kind: Kind,
  port: Schema.Int,
  event: ReportEvent,
  detail: Schema.String
})
export type Report = typeof Report.Type

export const PingInfo = Schema.Struct({
  node_mgr: Schema.String,
  hostaddr: Schema.String,
  port: Schema.Int,
  instances: Schema.Array(Instance),
  reports: Schema.Array(Report)
})
export type PingInfo = typeof PingInfo.Type

export const InstancesInfo = Schema.Struct({ instances: Schema.Array(Instance) })
export type InstancesInfo = typeof InstancesInfo.Type

export const PortIdleInfo = Schema.Struct({ port: Schema.Int, idle: Schema.Boolean })
export type PortIdleInfo = typeof PortIdleInfo.Type

export const PathSpace = Schema.Struct({ path: Schema.String, total_bytes: Schema.Number, free_bytes: Schema.Number })
export const PathsSpaceInfo = Schema.Struct({ paths: Schema.Array(PathSpace) })
export type PathsSpaceInfo = typeof PathsSpaceInfo.Type

/** delete_storage / delete_computer: `deleted` is false when there was nothing to delete. */
export const DeleteInfo = Schema.Struct({ kind: Kind, port: Schema.Int, deleted: Schema.Boolean, detail: Schema.String })
export type DeleteInfo = typeof DeleteInfo.Type

/** set_replica: the replica's view once both replication threads run. */
export const ReplicaInfo = Schema.Struct({
  port: Schema.Int,
  primary_host: Schema.String,
  primary_port: Schema.Int,
  read_only: Schema.Boolean,
  gtid_slave_pos: Schema.String
})
export type ReplicaInfo = typeof ReplicaInfo.Type

/** promote_replica: the instance is writable and replicates from nobody. */
export const PromoteInfo = Schema.Struct({ port: Schema.Int, read_only: Schema.Boolean, gtid_binlog_pos: Schema.String })
export type PromoteInfo = typeof PromoteInfo.Type

// ---------------------------------------------------------------------------------------------
// Decoding a request body; building requests and replies
// ---------------------------------------------------------------------------------------------

/** The echo fields of a request, whatever else is wrong with it. */
export interface RequestEcho {
  readonly cluster_mgr_request_id: string
  readonly task_spec_info: string
}

export interface DecodedRequest {
  readonly echo: RequestEcho
  /** The job, or why the request is refused. */
  readonly job: Either.Either<AgentJob, string>
}

type JsonObject = { readonly [key: string]: unknown }
const isJsonObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** An echo field: a string as is (the body limit bounds it), a number as its text, anything else as "". */
const echoText = (value: unknown): string =>
  typeof value === "string" ? value : typeof value === "number" && Number.isFinite(value) ? String(value) : ""

const decodeJobEither = Schema.decodeUnknownEither(AgentJob, { errors: "first" })

const knownJob = (jobType: string): jobType is JobType => (jobTypes as ReadonlyArray<string>).includes(jobType)

const decodeJobValue = (body: JsonObject): Either.Either<AgentJob, string> => {
  const jobType = body.job_type
  if (jobType === undefined) return Either.left("missing `job_type` in the request body")
  if (typeof jobType !== "string" || jobType.length === 0) {
    return Either.left(`\`job_type\` must be a non-empty string, got ${describe(jobType)}`)
  }
  if (unsupportedJobTypes.includes(jobType)) return Either.left(`job_type ${jobType} is not supported by this node_mgr`)
  if (!knownJob(jobType)) return Either.left(`unknown job_type: ${excerpt(jobType)}`)
  const paras = body.paras ?? {}
  if (!isJsonObject(paras)) return Either.left(`\`paras\` must be a JSON object, got ${describe(paras)}`)
  if (Object.hasOwn(paras, "__proto__")) return Either.left("the key `__proto__` is not allowed in `paras`")
  return Either.mapLeft(decodeJobEither({ ...paras, _tag: jobType }), (error) => {
    const issue = firstIssue(error)
    return issue.missing ? `missing \`paras.${issue.path}\`` : `\`paras.${issue.path}\` ${issue.message}`
  })
}

/** Any parsed JSON value to a job, or a clear reason it is refused (with the echo fields kept). */
export const decodeRequestValue = (body: unknown): DecodedRequest => {
  if (!isJsonObject(body)) {
    return {
      echo: { cluster_mgr_request_id: "", task_spec_info: "" },
      job: Either.left(`the request body must be a JSON object, got ${describe(body)}`)
    }
  }
  return {
    echo: { cluster_mgr_request_id: echoText(body.cluster_mgr_request_id), task_spec_info: echoText(body.task_spec_info) },
    job: decodeJobValue(body)
  }
}

/** A request body's text to a job, or a clear reason it is refused. */
export const decodeRequestText = (text: string): DecodedRequest => {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch (e) {
    return {
      echo: { cluster_mgr_request_id: "", task_spec_info: "" },
      job: Either.left(`the request body is not JSON: ${excerpt(e instanceof Error ? e.message : String(e))}`)
    }
  }
  return decodeRequestValue(body)
}

export const success = (echo: RequestEcho, info: unknown): AgentReply => ({
  cluster_mgr_request_id: echo.cluster_mgr_request_id,
  info,
  status: "success",
  task_spec_info: echo.task_spec_info
})

export const failed = (echo: RequestEcho, info: string): AgentReply => ({
  cluster_mgr_request_id: echo.cluster_mgr_request_id,
  info,
  status: "failed",
  task_spec_info: echo.task_spec_info
})

const encodeJob = Schema.encodeSync(AgentJob)

/**
 * The wire request for a typed job (cluster_mgr's side): paras as Klustron strings.
 * `requestFor({ _tag: "control_instance", port: 57001, control: "stop" }, "12")`.
 */
export const requestFor = (job: AgentJob, requestId = "", taskSpecInfo: string = job._tag): AgentRequest => {
  const { _tag, ...paras } = encodeJob(job) as { readonly _tag: string } & Record<string, unknown>
  return { cluster_mgr_request_id: requestId, task_spec_info: taskSpecInfo, job_type: _tag, paras }
}
