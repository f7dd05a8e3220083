import { Either, ParseResult, Schema } from "effect"
import type { EmitRequest, JobType } from "./envelope.js"
import { isJsonObject, jobTypes, NumberAsText } from "./envelope.js"
import { totalDecoder } from "../totalDecode.js"
import { BadRequest, describe, firstIssue, mustBe } from "./errors.js"

// ---------------------------------------------------------------------------------------------
// Combinators. Every leaf carries a "must be <expected>, got <describe(input)>" message that
// overrides Effect's default, which would serialise the (possibly hostile) input.
// ---------------------------------------------------------------------------------------------

/** A string that passes `test`. */
export const textWhere = (expected: string, test: (text: string) => boolean) =>
  Schema.String.pipe(Schema.filter(test)).annotations(mustBe(expected))

const decimal = /^(0|[1-9][0-9]{0,14})$/

/** Klustron sends numbers as strings ("2"); a JSON number is accepted as well. */
export const integerIn = (min: number, max: number, expected: string) =>
  Schema.transformOrFail(Schema.Union(Schema.String, Schema.Number), Schema.Int.pipe(Schema.between(min, max)), {
    strict: true,
    decode: (input, _, ast) => {
      const n = typeof input === "number" ? input : decimal.test(input) ? Number(input) : Number.NaN
      return Number.isSafeInteger(n) ? ParseResult.succeed(n) : ParseResult.fail(new ParseResult.Type(ast, input))
    },
    encode: (n) => ParseResult.succeed(String(n))
  }).annotations(mustBe(expected))

/** One of the given words. */
export const oneOf = <const L extends ReadonlyArray<string>>(...values: L) =>
  Schema.Literal(...values).annotations(mustBe(`one of ${values.join("|")}`))

/** The message of a container: used when the input is not one, yields to an inner field's own. */
const containerOf = (expected: string) => ({
  message: (issue: ParseResult.ParseIssue) => ({
    message: `must be ${expected}, got ${describe(issue.actual)}`,
    override: false
  })
})

/** A non-empty list; an item's own error (with its index in the path) wins over the list's. */
const listOf = <A, I>(item: Schema.Schema<A, I>, expected: string) =>
  Schema.Array(item)
    .annotations(containerOf(`a non-empty list of ${expected}`))
    .pipe(Schema.minItems(1))
    .annotations(containerOf(`a non-empty list of ${expected}`))

/** A JSON object of named fields; unknown fields are ignored, as Klustron does. */
const objectOf = <F extends Schema.Struct.Fields>(fields: F) =>
  Schema.Struct(fields).annotations(containerOf("an object"))

const optional = <A, I>(schema: Schema.Schema<A, I>) => Schema.optionalWith(schema, { exact: true })

// ---------------------------------------------------------------------------------------------
// Addresses. Shared with cluster_mgr.cnf parsing. IPv6 is not accepted: Klustron writes members
// as ip:port, which an IPv6 address would make ambiguous.
// ---------------------------------------------------------------------------------------------

const octet = /^(0|[1-9][0-9]{0,2})$/
const hostLabel = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/
const portText = /^[1-9][0-9]{0,4}$/

export const isIpv4 = (text: string): boolean => {
  const parts = text.split(".")
  return parts.length === 4 && parts.every((part) => octet.test(part) && Number(part) <= 255)
}

/** An IPv4 dotted quad, or a host name (RFC 1123) whose last label is not all digits. */
export const isHost = (text: string): boolean => {
  if (text.length === 0 || text.length > 253) return false
  const labels = text.split(".")
  return /^[0-9]+$/.test(labels[labels.length - 1]) ? isIpv4(text) : labels.every((l) => hostLabel.test(l))
}

export const isPort = (text: string): boolean => portText.test(text) && Number(text) <= 65535

/** Splits "host<sep>port" at the last separator; undefined unless both halves are valid. */
export const splitEndpoint = (text: string, separator: string): { host: string; port: number } | undefined => {
  const at = text.lastIndexOf(separator)
  const host = text.slice(0, at)
  const port = text.slice(at + 1)
  return at > 0 && isHost(host) && isPort(port) ? { host, port: Number(port) } : undefined
}

export const Host = textWhere("an IPv4 address or host name", isHost)
export const Port = integerIn(1, 65535, "a port number 1..65535")
export const PositiveInt = integerIn(1, Number.MAX_SAFE_INTEGER, "a positive integer")
const NonNegativeInt = integerIn(0, Number.MAX_SAFE_INTEGER, "a non-negative integer")
const Flag = integerIn(0, 1, "0 or 1")
/** How Raft members are named, in requests and in cluster_mgr.cnf: "ip:port". */
export const HostPort = textWhere("ip:port", (text) => splitEndpoint(text, ":") !== undefined)
/** Klustron names a storage instance "ip_port" in manual_switch; "ip:port" is accepted too. */
const InstanceAddress = textWhere(
  "ip_port or ip:port",
  (text) => splitEndpoint(text, "_") !== undefined || splitEndpoint(text, ":") !== undefined
)

// ---------------------------------------------------------------------------------------------
// Other value shapes
// ---------------------------------------------------------------------------------------------

/** Names in Klustron's meta tables are short; the bound keeps hostile megabytes out of the log. */
const textLengthMax = 255
const pathLengthMax = 4096

const Text = textWhere(
  `a non-empty string of at most ${textLengthMax} characters`,
  (text) => text.length > 0 && text.length <= textLengthMax
)
const TextOrNumber = Schema.Union(Schema.String, NumberAsText)
  .pipe(Schema.filter((text) => text.length <= pathLengthMax))
  .annotations(mustBe(`a string of at most ${pathLengthMax} characters`))
const AbsolutePath = textWhere(
  "an absolute path",
  (text) => text.startsWith("/") && text.length <= pathLengthMax && !text.includes("\0")
)

const isPortRange = (text: string): boolean => {
  const [low, high, ...rest] = text.split("-")
  return rest.length === 0 && high !== undefined && isPort(low) && isPort(high) && Number(low) <= Number(high)
}
const PortRange = textWhere("a port range like 57000-58000", isPortRange)
export const defaultPortRange = "57000-58000"

const clock = /^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$/
const daysIn = (year: number, month: number): number => {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  return month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31
}
const isDateTime = (text: string): boolean => {
  const match = /^([0-9]{4})-([0-9]{2})-([0-9]{2}) (.*)$/.exec(text)
  if (match === null || !clock.test(match[4])) return false
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])]
  return month >= 1 && month <= 12 && day >= 1 && day <= daysIn(year, month)
}
const DateTime = textWhere("a time like 2024-01-31 23:59:00", isDateTime)
const TimeWindow = textWhere("a window like 01:00:00-02:00:00", (text) => {
  const [from, to, ...rest] = text.split("-")
  return rest.length === 0 && to !== undefined && clock.test(from) && clock.test(to)
})
const tablePair = /^[^,=>\s]+=>[^,=>\s]+$/
const Repartitions = textWhere(
  "a list like db_$$_schema.t1=>db_$$_schema.t2,...",
  (text) => text.length <= pathLengthMax && text.split(",").every((pair) => tablePair.test(pair))
)

// ---------------------------------------------------------------------------------------------
// Commands: one tagged struct per job_type (per task_type for raft_mission), named as on the wire.
// ---------------------------------------------------------------------------------------------

export const TransferLeader = Schema.TaggedStruct("raft_mission", {
  task_type: Schema.Literal("transfer_leader"),
  target_leader: HostPort
})
export const AddPeer = Schema.TaggedStruct("raft_mission", { task_type: Schema.Literal("add_peer"), peer: HostPort })
export const RemovePeer = Schema.TaggedStruct("raft_mission", {
  task_type: Schema.Literal("remove_peer"),
  peer: HostPort
})
export const raftTaskTypes = ["transfer_leader", "add_peer", "remove_peer"] as const
const RaftTask = objectOf({ task_type: oneOf(...raftTaskTypes) })

const JobId = textWhere("a string of 1 to 20 digits", (text) => /^[0-9]{1,20}$/.test(text))

/** Names a job by the envelope's top-level job_id (Klustron's ids are decimal). */
export const GetStatus = Schema.TaggedStruct("get_status", {
  job_id: Schema.propertySignature(JobId).annotations({
    missingMessage: () => "is missing: get_status needs the id of the job to query"
  })
})

const noParas = <T extends JobType>(tag: T) => Schema.TaggedStruct(tag, {})
export const GetClusterMgrStatus = noParas("get_cluster_mgr_status")
export const GetMetaSummary = noParas("get_meta_summary")
export const GetClusterSummary = noParas("get_cluster_summary")
export const GetBackupStorage = noParas("get_backup_storage")

const MachineType = oneOf("storage", "computer")

/** Each machine type needs the directories its instances are installed in. */
const requiredDirs = { storage: ["datadir", "logdir", "wal_log_dir"], computer: ["comp_datadir"] } as const

export const CreateMachine = Schema.TaggedStruct("create_machine", {
  hostaddr: Host,
  machine_type: MachineType,
  rack_id: optional(Text),
  port_range: Schema.optionalWith(PortRange, { exact: true, default: () => defaultPortRange }),
  datadir: optional(AbsolutePath),
  logdir: optional(AbsolutePath),
  wal_log_dir: optional(AbsolutePath),
  comp_datadir: optional(AbsolutePath),
  total_mem: PositiveInt,
  total_cpu_cores: PositiveInt,
  /** Ours: the port of the machine's node_mgr agent (default 58010). */
  nodemgr_port: optional(Port)
}).pipe(
  Schema.filter((machine) => {
    const missing = requiredDirs[machine.machine_type].find((dir) => machine[dir] === undefined)
    const message = `is missing: a ${machine.machine_type} machine needs it`
    return missing === undefined || { path: [missing], message }
  })
)

export const DeleteMachine = Schema.TaggedStruct("delete_machine", { hostaddr: Host, machine_type: MachineType })

/** Changes the named fields of a machine; the others keep their values. */
export const UpdateMachine = Schema.TaggedStruct("update_machine", {
  hostaddr: Host,
  machine_type: optional(MachineType),
  rack_id: optional(Text),
  port_range: optional(PortRange),
  datadir: optional(AbsolutePath),
  logdir: optional(AbsolutePath),
  wal_log_dir: optional(AbsolutePath),
  comp_datadir: optional(AbsolutePath),
  total_mem: optional(PositiveInt),
  total_cpu_cores: optional(PositiveInt),
  nodemgr_port: optional(Port)
})

/** Ours, synchronous: the fleet's machines with node_stats, all or one. */
export const GetMachines = Schema.TaggedStruct("get_machines", { hostaddr: optional(Host) })

const IpList = listOf(Host, "IPv4 addresses or host names")

export const CreateCluster = Schema.TaggedStruct("create_cluster", {
  nick_name: optional(Text),
  ha_mode: oneOf("mgr", "rbr", "no_rep"),
  shards: PositiveInt,
  nodes: PositiveInt,
  comps: PositiveInt,
  max_storage_size: PositiveInt,
  max_connections: PositiveInt,
  cpu_cores: PositiveInt,
  innodb_size: PositiveInt,
  storage_iplists: optional(IpList),
  computer_iplists: optional(IpList)
})

/** Klustron names a cluster by id or by name; one of them is needed. */
const clusterRef = <T extends JobType>(tag: T) =>
  Schema.TaggedStruct(tag, { cluster_id: optional(PositiveInt), cluster_name: optional(Text) }).pipe(
    Schema.filter(
      (ref) => ref.cluster_id !== undefined || ref.cluster_name !== undefined || "needs cluster_id or cluster_name"
    )
  )
export const DeleteCluster = clusterRef("delete_cluster")
export const GetClusterDetail = clusterRef("get_cluster_detail")

export const AddShards = Schema.TaggedStruct("add_shards", {
  cluster_id: PositiveInt,
  shards: PositiveInt,
  nodes: PositiveInt,
  storage_iplists: optional(IpList)
})
export const DeleteShard = Schema.TaggedStruct("delete_shard", { cluster_id: PositiveInt, shard_id: PositiveInt })
export const AddComps = Schema.TaggedStruct("add_comps", {
  cluster_id: PositiveInt,
  comps: PositiveInt,
  computer_iplists: optional(IpList)
})
export const DeleteComp = Schema.TaggedStruct("delete_comp", { cluster_id: PositiveInt, comp_id: PositiveInt })
export const AddNodes = Schema.TaggedStruct("add_nodes", {
  cluster_id: PositiveInt,
  nodes: PositiveInt,
  shard_id: optional(PositiveInt),
  storage_iplists: optional(IpList)
})
export const DeleteNode = Schema.TaggedStruct("delete_node", {
  cluster_id: PositiveInt,
  shard_id: PositiveInt,
  hostaddr: Host,
  port: Port
})
export const ControlInstance = Schema.TaggedStruct("control_instance", {
  hostaddr: Host,
  port: Port,
  control: oneOf("start", "stop", "restart")
})
export const ManualSwitch = Schema.TaggedStruct("manual_switch", {
  cluster_id: PositiveInt,
  shard_id: PositiveInt,
  master_hostaddr: InstanceAddress,
  assign_hostaddr: optional(InstanceAddress)
})
export const RebuildNode = Schema.TaggedStruct("rebuild_node", {
  cluster_id: PositiveInt,
  shard_id: PositiveInt,
  rb_nodes: listOf(
    objectOf({
      hostaddr: Host,
      port: Port,
      need_backup: optional(Flag),
      hdfs_host: optional(Text),
      pv_limit: optional(PositiveInt)
    }),
    "nodes to rebuild"
  ),
  allow_pull_from_master: optional(Flag),
  allow_replica_delay: optional(NonNegativeInt)
})
export const ExpandCluster = Schema.TaggedStruct("expand_cluster", {
  cluster_id: PositiveInt,
  src_shard_id: PositiveInt,
  dst_shard_id: PositiveInt,
  table_list: listOf(Text, "table names")
})
export const ManualBackupCluster = Schema.TaggedStruct("manual_backup_cluster", { cluster_id: PositiveInt })
export const ClusterRestore = Schema.TaggedStruct("cluster_restore", {
  src_cluster_id: PositiveInt,
  dst_cluster_id: PositiveInt,
  restore_time: DateTime
})
const Scope = oneOf("db", "schema", "table")
export const LogicalBackup = Schema.TaggedStruct("logical_backup", {
  cluster_id: PositiveInt,
  backup_type: Scope,
  backup: listOf(objectOf({ db_table: Text, backup_time: TimeWindow }), "tables to back up")
})
export const LogicalRestore = Schema.TaggedStruct("logical_restore", {
  src_cluster_id: PositiveInt,
  dst_cluster_id: PositiveInt,
  restore_type: Scope,
  restore: listOf(objectOf({ db_table: Text, restore_time: DateTime }), "tables to restore")
})
export const TableRepartition = Schema.TaggedStruct("table_repartition", {
  src_cluster_id: PositiveInt,
  dst_cluster_id: PositiveInt,
  repartition_tables: Repartitions
})
const Variable = { hostaddr: Host, port: Port, variable_name: Text }
export const GetVariable = Schema.TaggedStruct("get_variable", Variable)
export const SetVariable = Schema.TaggedStruct("set_variable", { ...Variable, value: TextOrNumber })

export const Command = Schema.Union(
  TransferLeader,
  AddPeer,
  RemovePeer,
  GetStatus,
  GetClusterMgrStatus,
  CreateMachine,
  DeleteMachine,
  UpdateMachine,
  GetMachines,
  CreateCluster,
  DeleteCluster,
  AddShards,
  DeleteShard,
  AddComps,
  DeleteComp,
  AddNodes,
  DeleteNode,
  ControlInstance,
  ManualSwitch,
  RebuildNode,
  ExpandCluster,
  ManualBackupCluster,
  ClusterRestore,
  GetMetaSummary,
  GetClusterDetail,
  GetClusterSummary,
  GetBackupStorage,
  GetVariable,
  SetVariable,
  LogicalBackup,
  LogicalRestore,
  TableRepartition
)
export type Command = typeof Command.Type

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

const where = (root: string, path: string): string =>
  root === "" ? path : path === "" ? root : path.startsWith("[") ? `${root}${path}` : `${root}.${path}`

/**
 * A decoder for `schema` whose errors name the failing field under `root` (paras.peer, job_id).
 * Built once per schema, not per request.
 */
const decoderAt = <A, I>(schema: Schema.Schema<A, I>, root: string) => {
  const decode = totalDecoder(schema, { errors: "first" })
  return (input: unknown): Either.Either<A, BadRequest> =>
    Either.mapLeft(decode(input), (error) => {
      const issue = firstIssue(error)
      return new BadRequest({ info: `${where(root, issue.path)} ${issue.message}` })
    })
}

type Decoder = (request: EmitRequest) => Either.Either<Command, BadRequest>

/** `_tag` is written last so a `_tag` key in paras cannot pick another command. */
const fromParas = <A extends Command, I>(schema: Schema.Schema<A, I>): Decoder => {
  const decode = decoderAt(schema, "paras")
  return (request) => decode({ ...request.paras, _tag: request.job_type })
}

const raftTaskDecoders: { readonly [K in (typeof raftTaskTypes)[number]]: Decoder } = {
  transfer_leader: fromParas(TransferLeader),
  add_peer: fromParas(AddPeer),
  remove_peer: fromParas(RemovePeer)
}

const decodeRaftTask = decoderAt(RaftTask, "paras")
const decodeRaftMission: Decoder = (request) =>
  Either.flatMap(decodeRaftTask(request.paras), ({ task_type }) => raftTaskDecoders[task_type](request))

const decodeGetStatusParas = decoderAt(GetStatus, "")
const decodeGetStatus: Decoder = ({ job_id }) =>
  decodeGetStatusParas(job_id === undefined ? { _tag: "get_status" } : { _tag: "get_status", job_id })

const decoders: { readonly [K in JobType]: Decoder } = {
  raft_mission: decodeRaftMission,
  get_status: decodeGetStatus,
  get_cluster_mgr_status: fromParas(GetClusterMgrStatus),
  create_machine: fromParas(CreateMachine),
  delete_machine: fromParas(DeleteMachine),
  update_machine: fromParas(UpdateMachine),
  get_machines: fromParas(GetMachines),
  create_cluster: fromParas(CreateCluster),
  delete_cluster: fromParas(DeleteCluster),
  add_shards: fromParas(AddShards),
  delete_shard: fromParas(DeleteShard),
  add_comps: fromParas(AddComps),
  delete_comp: fromParas(DeleteComp),
  add_nodes: fromParas(AddNodes),
  delete_node: fromParas(DeleteNode),
  control_instance: fromParas(ControlInstance),
  manual_switch: fromParas(ManualSwitch),
  rebuild_node: fromParas(RebuildNode),
  expand_cluster: fromParas(ExpandCluster),
  manual_backup_cluster: fromParas(ManualBackupCluster),
  cluster_restore: fromParas(ClusterRestore),
  get_meta_summary: fromParas(GetMetaSummary),
  get_cluster_detail: fromParas(GetClusterDetail),
  get_cluster_summary: fromParas(GetClusterSummary),
  get_backup_storage: fromParas(GetBackupStorage),
  get_variable: fromParas(GetVariable),
  set_variable: fromParas(SetVariable),
  logical_backup: fromParas(LogicalBackup),
  logical_restore: fromParas(LogicalRestore),
  table_repartition: fromParas(TableRepartition)
}

/** Validates a request's paras (or job_id) for its job_type, before any job is accepted. */
export const decodeCommand = (request: EmitRequest): Either.Either<Command, BadRequest> =>
  decoders[request.job_type](request)

/** Decodes the paras an accepted job was stored with, as its runner needs them. */
export const decodeJobParas = (jobType: string, paras: unknown): Either.Either<Command, BadRequest> =>
  (jobTypes as ReadonlyArray<string>).includes(jobType) && isJsonObject(paras)
    ? decoders[jobType as JobType]({ job_type: jobType as JobType, paras })
    : Either.left(new BadRequest({ info: `job_type ${jobType} with these paras cannot be decoded` }))
