import * as path from "node:path"
import type { Kind } from "./protocol.js"
import { isIpv4 } from "./protocol.js"

/**
 * Where an instance's files are, what its configuration says and which SQL the agent sends it.
 * Pure: everything here is built from validated values only (an IPv4 literal, integer ports,
 * the configured password), never from free request text.
 */

/** `<root>/<port>`: the instance's own directory. */
export const instanceDir = (root: string, port: number): string => path.join(root, String(port))

/** Written first by an install, removed once it succeeded: a directory with it is a failed install's leftover. */
export const installMarker = ".node_mgr_installing"

export interface StoragePaths {
  readonly dir: string
  readonly data: string
  readonly cnf: string
  readonly socket: string
  readonly pidFile: string
  readonly log: string
}

export const storagePaths = (dir: string): StoragePaths => ({
  dir,
  data: path.join(dir, "data"),
  cnf: path.join(dir, "my.cnf"),
  socket: path.join(dir, "mysql.sock"),
  pidFile: path.join(dir, "mariadbd.pid"),
  log: path.join(dir, "mariadbd.log")
})

export interface ComputerPaths {
  readonly dir: string
  readonly data: string
  readonly sockDir: string
  /** postmaster.pid: its first line is the postmaster's pid. */
  readonly pidFile: string
  readonly log: string
}

export const computerPaths = (dir: string): ComputerPaths => ({
  dir,
  data: path.join(dir, "data"),
  sockDir: path.join(dir, "sock"),
  pidFile: path.join(dir, "data", "postmaster.pid"),
  log: path.join(dir, "postgres.log")
})

/** The data directory an Instance reports. */
export const dataDirOf = (kind: Kind, dir: string): string => (kind === "storage" ? storagePaths(dir) : computerPaths(dir)).data

/**
 * A MariaDB server_id unique per machine and port: the low 16 bits of the IPv4 address, then
 * the port. Two instances collide only on machines whose addresses agree in the last two
 * octets (different /16 networks) and on the same port.
 */
export const serverIdOf = (ip: string, port: number): number => {
  if (!isIpv4(ip)) throw new Error(`serverIdOf: not an IPv4 address: ${ip}`)
  const [, , c, d] = ip.split(".").map(Number)
  return ((c << 24) | (d << 16) | port) >>> 0 || port
}

export interface StorageSettings {
  readonly ip: string
  readonly port: number
  readonly bufferPoolSize: string
}

export const defaultBufferPoolSize = "128M"

/** my.cnf of a storage instance: GTID binlog for replication, bound to the machine's address. */
export const renderStorageCnf = (paths: StoragePaths, s: StorageSettings): string =>
  [
    "# Written by node_mgr; it rewrites this file on install only.",
    "[mysqld]",
    `datadir=${paths.data}`,
    `socket=${paths.socket}`,
    `pid-file=${paths.pidFile}`,
    `port=${s.port}`,
    `bind-address=${s.ip}`,
    `server_id=${serverIdOf(s.ip, s.port)}`,
    "log_bin=mariadb-bin",
    "log_slave_updates=ON",
    "binlog_format=ROW",
    "relay_log=relay-bin",
    "skip-name-resolve",
    `innodb_buffer_pool_size=${s.bufferPoolSize}`,
    ""
  ].join("\n")

/** A SQL string literal. Callers pass validated values; quoting is a second line of defence. */
export const sqlString = (text: string): string => `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`

export const replicationUser = "repl"

/**
 * Run once on a new storage instance, unlogged (sql_log_bin=0) so a replica's binlog holds no
 * GTIDs of its own and can follow any primary. root stays reachable through the unix socket
 * (unix_socket authentication, as mariadb-install-db made it).
 */
export const storageSetupSql = (password: string): string =>
  [
    "SET SESSION sql_log_bin=0",
    `CREATE USER IF NOT EXISTS '${replicationUser}'@'%' IDENTIFIED BY ${sqlString(password)}`,
    `ALTER USER '${replicationUser}'@'%' IDENTIFIED BY ${sqlString(password)}`,
    `GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '${replicationUser}'@'%'`,
    "FLUSH PRIVILEGES"
  ].join(";\n") + ";"

/**
 * Follow `host:port` with GTIDs. gtid_slave_pos is first set to what this instance's binlog
 * holds, so a former primary (whose own writes are in gtid_binlog_pos only) resumes where it
 * is instead of fetching everything again.
 */
export const setReplicaSql = (host: string, port: number, password: string): string => {
  if (!isIpv4(host) || !Number.isInteger(port)) throw new Error("setReplicaSql: unvalidated address")
  return (
    [
      "STOP SLAVE",
      "SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos",
      `CHANGE MASTER TO master_host=${sqlString(host)}, master_port=${port}, master_user='${replicationUser}', ` +
        `master_password=${sqlString(password)}, master_use_gtid=slave_pos, master_connect_retry=1`,
      "START SLAVE",
      "SET GLOBAL read_only=ON"
    ].join(";\n") + ";"
  )
}

export const promoteSql = ["STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only=OFF"].join(";\n") + ";"

/** `SHOW SLAVE STATUS` printed vertically (`mariadb -E`): `Name: value` lines. Empty: no replication. */
export const parseVertical = (text: string): Record<string, string> => {
  const fields: Record<string, string> = {}
  for (const line of text.split("\n")) {
    const match = /^\s*([A-Za-z_]+):\s?(.*)$/.exec(line)
    if (match !== null) fields[match[1]] = match[2].trim()
  }
  return fields
}

export interface SlaveState {
  readonly ioRunning: string
  readonly sqlRunning: string
  readonly lastIoError: string
  readonly lastSqlError: string
}

export const slaveStateOf = (fields: Record<string, string>): SlaveState => ({
  ioRunning: fields.Slave_IO_Running ?? "No",
  sqlRunning: fields.Slave_SQL_Running ?? "No",
  lastIoError: fields.Last_IO_Error ?? "",
  lastSqlError: fields.Last_SQL_Error ?? ""
})

export const replicating = (s: SlaveState): boolean => s.ioRunning === "Yes" && s.sqlRunning === "Yes"

export const describeSlave = (s: SlaveState): string =>
  `Slave_IO_Running=${s.ioRunning}, Slave_SQL_Running=${s.sqlRunning}` +
  `, Last_IO_Error: ${s.lastIoError || "(none)"}` +
  (s.lastSqlError ? `, Last_SQL_Error: ${s.lastSqlError}` : "")

/** Restart back-off after failed restarts: the interval doubled per failure, at most a minute. */
export const restartBackoffMs = (intervalMs: number, failures: number): number =>
  Math.min(60_000, intervalMs * 2 ** Math.min(failures, 16))
