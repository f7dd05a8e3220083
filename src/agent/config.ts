import { Either, ParseResult, Schema } from "effect"
import * as path from "node:path"
import { cnfErrorAt as errorAt, type ConfigError, documented, fieldDoc, lexCnf, optional, withDefault, Word } from "../domain/cnf.js"
import { firstIssue, mustBe } from "../domain/emit/errors.js"
import { isIpv4 } from "./protocol.js"

/**
 * node_mgr.cnf: Klustron's format (`name = value` lines, `#` comments), the same syntax as
 * cluster_mgr.cnf. Pure: the text and the working directory in, an AgentConfig or one
 * ConfigError naming key and line out.
 */

const textWhere = (expected: string, test: (text: string) => boolean) =>
  Schema.String.pipe(Schema.filter(test)).annotations(mustBe(expected))


const integerText = (min: number, max: number, expected: string) =>
  Schema.transformOrFail(Schema.String, Schema.Int, {
    strict: true,
    decode: (text, _, ast) => {
      const n = /^[0-9]{1,15}$/.test(text) ? Number(text) : Number.NaN
      return n >= min && n <= max ? ParseResult.succeed(n) : ParseResult.fail(new ParseResult.Type(ast, text))
    },
    encode: (n) => ParseResult.succeed(String(n))
  }).annotations(mustBe(expected))

const Port = integerText(1, 65535, "a port number 1..65535")
const PositiveInt = integerText(1, Number.MAX_SAFE_INTEGER, "a positive integer")

const intervalMin = 0.1
const intervalMax = 3600

/** Seconds, fractions allowed (Klustron's key is whole seconds; 0.5 is ours). */
const Seconds = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (text, _, ast) => {
    const n = /^[0-9]{1,6}(\.[0-9]{1,6})?$/.test(text) ? Number(text) : Number.NaN
    return n >= intervalMin && n <= intervalMax ? ParseResult.succeed(n) : ParseResult.fail(new ParseResult.Type(ast, text))
  },
  encode: (n) => ParseResult.succeed(String(n))
}).annotations(mustBe(`a number of seconds ${intervalMin}..${intervalMax}, like 2 or 0.5`))

export interface PortRange {
  readonly low: number
  readonly high: number
}

const PortRangeText = Schema.transformOrFail(Schema.String, Schema.Struct({ low: Schema.Int, high: Schema.Int }), {
  strict: true,
  decode: (text, _, ast) => {
    const match = /^([1-9][0-9]{0,4})-([1-9][0-9]{0,4})$/.exec(text)
    const [low, high] = match === null ? [0, 0] : [Number(match[1]), Number(match[2])]
    return low >= 1 && high <= 65535 && low <= high
      ? ParseResult.succeed({ low, high })
      : ParseResult.fail(new ParseResult.Type(ast, text))
  },
  encode: (r) => ParseResult.succeed(`${r.low}-${r.high}`)
}).annotations(mustBe("a port range like 57000-58000 (low <= high)"))

/** Only characters that need no quoting in SQL, argv or a cnf file. */
const Password = textWhere("1..64 characters from A-Z a-z 0-9 _ . - + = @ % ^ ~ : , !", (text) =>
  /^[A-Za-z0-9_.\-+=@%^~:,!]{1,64}$/.test(text)
)

const AbsoluteDir = textWhere("an absolute path without spaces or #", (text) => text.startsWith("/") && !/[\s#]/.test(text))


export const defaultHttpPort = 58010
export const defaultReplicationPassword = "repl_pwd"

const AgentConfigFields = Schema.Struct({
  local_ip: documented(
    "This machine's IPv4 address (required): the agent and every instance listen there.",
    textWhere("an IPv4 address like 192.168.0.10", isIpv4)
  ),
  brpc_http_port: withDefault("Port of the agent's Emit HTTP API.", Port, defaultHttpPort),
  node_mgr_tmp_data_path: withDefault("The agent's own state (instances, reports).", Word, "./node_mgr_data"),
  storage_data_root: withDefault("Storage (MariaDB) instances live in <root>/<port>/.", Word, "./storage_datadir"),
  computer_data_root: withDefault("Computer (PostgreSQL) instances live in <root>/<port>/.", Word, "./server_datadir"),
  instance_port_range: withDefault(
    "Every instance port (and every port a request names) must lie in this range.",
    PortRangeText,
    { low: 57000, high: 58000 }
  ),
  thread_work_interval: withDefault(
    "Seconds between two supervision rounds (select 1 on each instance); fractions allowed.",
    Seconds,
    2
  ),
  instance_hang_timeout_ms: withDefault(
    "An instance that answered select 1 before and has not for this long is killed and restarted.",
    PositiveInt,
    60000
  ),
  replication_password: withDefault(
    "Password of the `repl` user every storage instance gets, and replicas use.",
    Password,
    defaultReplicationPassword
  ),
  mariadb_bin_dir: optional(
    "Directory of mariadbd, mariadb and mariadb-install-db (also looked for in ../sbin, ../scripts). " +
      "Default: /usr/sbin/mariadbd and /usr/bin.",
    AbsoluteDir
  ),
  postgresql_bin_dir: optional(
    "Directory of postgres, initdb and psql. Default: the newest /usr/lib/postgresql/*/bin.",
    AbsoluteDir
  ),
  log_file: optional("Log file; logs go to standard output when unset.", Word),
  http_max_body_bytes: withDefault("Largest accepted request body; larger ones get HTTP 413.", PositiveInt, 1048576)
})

type Fields = typeof AgentConfigFields.Type

/** Decoded node_mgr.cnf with every path made absolute. */
export interface AgentConfig extends Fields {
  readonly portRange: PortRange
}

export type AgentConfigKey = keyof typeof AgentConfigFields.fields
export const agentConfigKeys = Object.keys(AgentConfigFields.fields) as ReadonlyArray<AgentConfigKey>
const isKey = (key: string): key is AgentConfigKey => (agentConfigKeys as ReadonlyArray<string>).includes(key)

// ---------------------------------------------------------------------------------------------
// Lexing: the same rules as cluster_mgr.cnf (src/domain/config.ts)
// ---------------------------------------------------------------------------------------------

const collect = (source: string, text: string) => lexCnf(source, text, isKey)

// ---------------------------------------------------------------------------------------------
// Checks across keys, after paths are made absolute
// ---------------------------------------------------------------------------------------------

/** sun_path holds 108 bytes with the terminating NUL. */
export const socketPathMax = 107
/** Longest socket path below a root: `/<port>/mysql.sock` and `/<port>/sock/.s.PGSQL.<port>`. */
const storageSocketSuffix = "/65535/mysql.sock".length
const computerSocketSuffix = "/65535/sock/.s.PGSQL.65535".length

const crossCheck = (c: AgentConfig): { key: AgentConfigKey; message: string } | undefined => {
  if (c.storage_data_root.length + storageSocketSuffix > socketPathMax) {
    return { key: "storage_data_root", message: `is too long for a unix socket below it (at most ${socketPathMax - storageSocketSuffix} characters as an absolute path)` }
  }
  if (c.computer_data_root.length + computerSocketSuffix > socketPathMax) {
    return { key: "computer_data_root", message: `is too long for a unix socket below it (at most ${socketPathMax - computerSocketSuffix} characters as an absolute path)` }
  }
  const inside = (dir: string, root: string) => dir === root || dir.startsWith(root + "/")
  for (const root of ["storage_data_root", "computer_data_root"] as const) {
    if (inside(c.node_mgr_tmp_data_path, c[root]) || inside(c[root], c.node_mgr_tmp_data_path)) {
      return { key: "node_mgr_tmp_data_path", message: `must not be inside \`${root}\` nor contain it` }
    }
  }
  return undefined
}

const decodeFields = Schema.decodeUnknownEither(AgentConfigFields, { errors: "first" })

const absolute = (cwd: string, p: string): string => path.resolve(cwd, p)

/** node_mgr.cnf text to an AgentConfig (relative paths resolved against `cwd`), or the first problem. */
export const parseAgentConfig = (
  text: string,
  source = "node_mgr.cnf",
  cwd = "/"
): Either.Either<AgentConfig, ConfigError> =>
  Either.flatMap(collect(source, text), (settings) => {
    const values = Object.fromEntries([...settings.values()].map((s) => [s.key, s.value]))
    return Either.flatMap(
      Either.mapLeft(decodeFields(values), (error) => {
        const issue = firstIssue(error)
        const key = issue.path as AgentConfigKey
        if (issue.missing) return errorAt(source, undefined, `missing required key \`${key}\``, key)
        return errorAt(source, settings.get(key)?.line, `\`${key}\` ${issue.message}`, key)
      }),
      (fields) => {
        const config: AgentConfig = {
          ...fields,
          node_mgr_tmp_data_path: absolute(cwd, fields.node_mgr_tmp_data_path),
          storage_data_root: absolute(cwd, fields.storage_data_root),
          computer_data_root: absolute(cwd, fields.computer_data_root),
          log_file: fields.log_file === undefined ? undefined : absolute(cwd, fields.log_file),
          portRange: fields.instance_port_range
        }
        const problem = crossCheck(config)
        return problem === undefined
          ? Either.right(config)
          : Either.left(errorAt(source, settings.get(problem.key)?.line, `\`${problem.key}\` ${problem.message}`, problem.key))
      }
    )
  })

/** Each key with its documentation and default, for docs/node_mgr.md and the tests that check it. */
export const describeKeys = (): ReadonlyArray<{ key: AgentConfigKey; doc: string; default: string | undefined }> =>
  agentConfigKeys.map((key) => {
    const doc = fieldDoc(AgentConfigFields.fields[key])
    const decoded = decodeFields(key === "local_ip" ? {} : { local_ip: "127.0.0.1" })
    const value = Either.isRight(decoded) ? (decoded.right as Record<string, unknown>)[key] : undefined
    const encoded =
      value === undefined
        ? undefined
        : key === "instance_port_range"
          ? `${(value as PortRange).low}-${(value as PortRange).high}`
          : String(value)
    return { key, doc, default: encoded }
  })

/** The agent's address as logs and replies name it. */
export const agentAddress = (c: Pick<AgentConfig, "local_ip" | "brpc_http_port">): string => `${c.local_ip}:${c.brpc_http_port}`
