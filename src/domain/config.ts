import { Either, ParseResult, Schema } from "effect"
import { type CnfSetting, cnfErrorAt as errorAt, ConfigError, documented, fieldDoc, lexCnf, optional, withDefault, Word } from "./cnf.js"
import { Host, Port, PositiveInt, splitEndpoint } from "./emit/commands.js"
import { excerpt, firstIssue, mustBe } from "./emit/errors.js"
import { defaultLogRetainEntries, defaultSnapshotEntries } from "./raft/options.js"

export { ConfigError }

// ---------------------------------------------------------------------------------------------
// Value schemas: each decodes the text of a value and encodes back to it (for renderConfig).
// ---------------------------------------------------------------------------------------------


const truths: Record<string, boolean> = { true: true, false: false, on: true, off: false, "1": true, "0": false }

const Bool = Schema.transformOrFail(Schema.String, Schema.Boolean, {
  strict: true,
  decode: (text, _, ast) => {
    const value = Object.hasOwn(truths, text.toLowerCase()) ? truths[text.toLowerCase()] : undefined
    return value === undefined ? ParseResult.fail(new ParseResult.Type(ast, text)) : ParseResult.succeed(value)
  },
  encode: (value) => ParseResult.succeed(String(value))
}).annotations(mustBe("true, false, on, off, 1 or 0"))

/** A count where 0 means "no limit"; digits only, as Klustron writes numbers. */
const Count = Schema.transformOrFail(Schema.String, Schema.Int.pipe(Schema.nonNegative()), {
  strict: true,
  decode: (text, _, ast) =>
    /^(0|[1-9][0-9]{0,14})$/.test(text) ? ParseResult.succeed(Number(text)) : ParseResult.fail(new ParseResult.Type(ast, text)),
  encode: (n) => ParseResult.succeed(String(n))
}).annotations(mustBe("a non-negative integer"))

const memberFormat = /^(.*):([0-9]+)$/

/** One `ip:raft_port:idx` entry; braft's idx distinguishes peers in one process, so it is 0. */
const parseMember = (entry: string): string | undefined => {
  const match = memberFormat.exec(entry)
  return match !== null && match[2] === "0" && splitEndpoint(match[1], ":") !== undefined ? match[1] : undefined
}

const memberListError = (entries: ReadonlyArray<string>, members: ReadonlyArray<string>): string | undefined => {
  const bad = entries.findIndex((entry) => parseMember(entry) === undefined)
  if (bad >= 0) return `entry ${bad + 1} must be ip:raft_port:0, got '${excerpt(entries[bad])}'`
  const seen = new Set<string>()
  const twice = members.find((member) => {
    if (seen.has(member)) return true
    seen.add(member)
    return false
  })
  return twice === undefined ? undefined : `lists ${twice} twice`
}

/** Klustron's member list, `ip:raft_port:0,` repeated; the trailing comma is optional here. */
const MemberList = Schema.transformOrFail(Schema.String, Schema.Array(Schema.String), {
  strict: true,
  decode: (text, _, ast) => {
    const entries = (text.endsWith(",") ? text.slice(0, -1) : text).split(",")
    const members = entries.flatMap((entry) => parseMember(entry) ?? [])
    const error = memberListError(entries, members)
    return error === undefined ? ParseResult.succeed(members) : ParseResult.fail(new ParseResult.Type(ast, text, error))
  },
  encode: (members) => ParseResult.succeed(members.map((member) => `${member}:0,`).join(""))
})


// ---------------------------------------------------------------------------------------------
// The keys. Each one's description is its documentation and the comment renderConfig writes.
// ---------------------------------------------------------------------------------------------

const ConfigFields = Schema.Struct({
  local_ip: documented("This node's IP address (required); peers and clients reach it there.", Host),
  brpc_http_port: withDefault("Port of the Emit HTTP API.", Port, 58000),
  brpc_raft_port: withDefault("Port of Raft traffic between cluster_mgr members.", Port, 58001),
  raft_group_member_init_config: documented(
    "Initial members, ip:raft_port:0 separated by commas (required; must include this node). " +
      "Only bootstraps an empty data directory: later membership lives in the Raft log.",
    MemberList
  ),
  cluster_mgr_tmp_data_path: withDefault("Data directory: Raft log, snapshots, state.", Word, "./data"),
  log_file: optional("Log file; logs go to standard output when unset.", Word),
  thread_work_interval: optional("Accepted for Klustron compatibility (seconds); unused.", PositiveInt),
  check_shard_interval: optional("Accepted for Klustron compatibility (seconds); unused.", PositiveInt),
  raft_tick_ms: withDefault("Length of one Raft tick; every Raft timeout is counted in ticks.", PositiveInt, 10),
  raft_election_timeout_ms: withDefault(
    "A follower that hears no leader for this long (plus a random part below raft_election_jitter_ms) starts an election. Klustron: 5000.",
    PositiveInt,
    1000
  ),
  raft_election_jitter_ms: optional(
    "Width of the random part of the election timeout; default raft_heartbeat_interval_ms. A pause or partition of the leader is noticed within timeout + jitter; a narrow range risks split votes.",
    PositiveInt
  ),
  raft_heartbeat_interval_ms: withDefault(
    "The leader's heartbeat period; must be less than raft_election_timeout_ms.",
    PositiveInt,
    100
  ),
  raft_snapshot_interval_entries: withDefault("Snapshot after this many applied entries.", PositiveInt, defaultSnapshotEntries),
  raft_snapshot_interval_sec: withDefault(
    "...or after this many seconds with anything applied. Klustron: 60.",
    PositiveInt,
    60
  ),
  raft_log_retain_entries: withDefault(
    "Log entries kept in memory below a snapshot, so a slightly lagging follower needs no snapshot.",
    PositiveInt,
    defaultLogRetainEntries
  ),
  journal_retain_events: withDefault(
    "Keep at least this many newest events in the journal; older ones are pruned once a Raft snapshot covers them. 0: no limit by count (with journal_retain_days 0 too, keep everything).",
    Count,
    0
  ),
  journal_retain_days: withDefault(
    "Keep at least the events of this many days before the newest one; older ones are pruned once a Raft snapshot covers them. 0: no limit by age.",
    Count,
    0
  ),
  raft_catchup_timeout_ms: withDefault(
    "add_peer fails unless the new member catches up with the log within this time.",
    PositiveInt,
    10000
  ),
  raft_transfer_timeout_ms: withDefault(
    "transfer_leader is aborted unless the target takes over within this time.",
    PositiveInt,
    3000
  ),
  machine_ping_interval_ms: withDefault(
    "The leader pings every machine's node_mgr agent this often. Klustron: 60000.",
    PositiveInt,
    5000
  ),
  machine_dead_after_misses: withDefault(
    "A machine is marked dead after this many missed pings in a row. Klustron: 10.",
    PositiveInt,
    3
  ),
  node_mgr_request_timeout_ms: withDefault(
    "Longest wait for one node_mgr request of a job (a control_instance restart, say).",
    PositiveInt,
    120000
  ),
  http_max_body_bytes: withDefault("Largest accepted Emit request body.", PositiveInt, 1048576),
  raft_group_id: withDefault("Name of the Raft group; members of other groups are refused.", Word, "cluster_mgr"),
  raft_pre_vote: withDefault(
    "Run a pre-vote before an election, so a partitioned node cannot disturb the group.",
    Bool,
    true
  ),
  raft_lease_read: withDefault(
    "Serve reads from the leader's lease instead of a heartbeat round (relies on bounded clock drift).",
    Bool,
    false
  ),
  raft_fault_injection: withDefault(
    "Test only: enables fault-injection hooks. Never set it in production.",
    Bool,
    false
  )
})

const selfOf = (config: typeof ConfigFields.Type): string => `${config.local_ip}:${config.brpc_raft_port}`

/** The node configuration from cluster_mgr.cnf. Encoded: each key's text; decoded: typed values. */
export const Config = ConfigFields.pipe(
  Schema.filter((config) => {
    if (!config.raft_group_member_init_config.includes(selfOf(config))) {
      return {
        path: ["raft_group_member_init_config"],
        message: `must include this node, local_ip:brpc_raft_port = ${selfOf(config)}`
      }
    }
    return config.raft_heartbeat_interval_ms < config.raft_election_timeout_ms
      ? true
      : {
          path: ["raft_heartbeat_interval_ms"],
          message:
            `(${config.raft_heartbeat_interval_ms}) must be less than ` +
            `\`raft_election_timeout_ms\` (${config.raft_election_timeout_ms})`
        }
  })
)
export type Config = typeof Config.Type

export type ConfigKey = keyof typeof ConfigFields.fields
const configKeys = Object.keys(ConfigFields.fields) as ReadonlyArray<ConfigKey>
const isConfigKey = (key: string): key is ConfigKey => (configKeys as ReadonlyArray<string>).includes(key)

/** A check that compares two keys is reported on the other key's line when the first is defaulted. */
const comparedWith: Partial<Record<ConfigKey, ConfigKey>> = { raft_heartbeat_interval_ms: "raft_election_timeout_ms" }

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

type Setting = CnfSetting<ConfigKey>

const collect = (source: string, text: string) => lexCnf(source, text, isConfigKey)

const decodeConfig = Schema.decodeUnknownEither(Config, { errors: "first" })

const toConfigError = (source: string, settings: Map<ConfigKey, Setting>, error: ParseResult.ParseError) => {
  const issue = firstIssue(error)
  const key = issue.path as ConfigKey
  if (issue.missing) {
    return errorAt(source, undefined, `missing required key \`${key}\``, key)
  }
  const partner = comparedWith[key]
  const line = settings.get(key)?.line ?? (partner === undefined ? undefined : settings.get(partner)?.line)
  return errorAt(source, line, `\`${key}\` ${issue.message}`, key)
}

/** cluster_mgr.cnf text to a Config, or the first problem found, naming key and line. */
export const parseConfig = (text: string, source = "cluster_mgr.cnf"): Either.Either<Config, ConfigError> =>
  Either.flatMap(collect(source, text), (settings) => {
    const values = Object.fromEntries([...settings.values()].map((s) => [s.key, s.value]))
    return Either.mapLeft(decodeConfig(values), (error) => toConfigError(source, settings, error))
  })

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

const docOf = (key: ConfigKey): string => fieldDoc(ConfigFields.fields[key])

/**
 * A cnf text that parses back to `config`, each key preceded by its documentation. Throws (a
 * defect) only for a Config that violates its own schema, which parseConfig never returns.
 */
export const renderConfig = (config: Config): string => {
  const encoded: Partial<Record<ConfigKey, unknown>> = Schema.encodeSync(Config)(config)
  return configKeys
    .filter((key) => encoded[key] !== undefined)
    .map((key) => `# ${docOf(key)}\n${key} = ${String(encoded[key])}\n`)
    .join("\n")
}
