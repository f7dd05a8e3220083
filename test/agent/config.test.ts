import { Either } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { type AgentConfig, agentConfigKeys, describeKeys, parseAgentConfig } from "../../src/agent/config.js"

const parsed = (text: string, cwd = "/srv"): AgentConfig => {
  const result = parseAgentConfig(text, "node_mgr.cnf", cwd)
  if (Either.isLeft(result)) throw new Error(result.left.message)
  return result.right
}

const refused = (text: string): string => {
  const result = parseAgentConfig(text, "node_mgr.cnf", "/srv")
  if (Either.isRight(result)) throw new Error("accepted")
  return result.left.message
}

describe("node_mgr.cnf", () => {
  it("needs only local_ip and fills every default, paths made absolute against the working directory", () => {
    expect(parsed("local_ip = 10.0.0.5\n")).toEqual({
      local_ip: "10.0.0.5",
      brpc_http_port: 58010,
      node_mgr_tmp_data_path: "/srv/node_mgr_data",
      storage_data_root: "/srv/storage_datadir",
      computer_data_root: "/srv/server_datadir",
      instance_port_range: { low: 57000, high: 58000 },
      portRange: { low: 57000, high: 58000 },
      thread_work_interval: 2,
      instance_hang_timeout_ms: 60000,
      replication_password: "repl_pwd",
      log_file: undefined,
      http_max_body_bytes: 1048576
    })
  })

  it("reads Klustron's syntax: comments, no spaces around =, CRLF, words after the value, fractional interval", () => {
    const config = parsed(
      [
        "# node_mgr",
        "local_ip=192.168.0.7   # this machine",
        "brpc_http_port = 58110",
        "storage_data_root = /data/storage the storage root",
        "computer_data_root = /data/computer",
        "node_mgr_tmp_data_path = ../state",
        "instance_port_range = 60000-60100",
        "thread_work_interval = 0.5",
        "replication_password = s3cret-pw",
        "mariadb_bin_dir = /opt/mariadb/bin",
        "postgresql_bin_dir = /opt/pg/bin",
        "log_file = node_mgr.log"
      ].join("\r\n"),
      "/home/k/run"
    )
    expect(config).toMatchObject({
      local_ip: "192.168.0.7",
      brpc_http_port: 58110,
      storage_data_root: "/data/storage",
      node_mgr_tmp_data_path: "/home/k/state",
      portRange: { low: 60000, high: 60100 },
      thread_work_interval: 0.5,
      replication_password: "s3cret-pw",
      mariadb_bin_dir: "/opt/mariadb/bin",
      postgresql_bin_dir: "/opt/pg/bin",
      log_file: "/home/k/run/node_mgr.log"
    })
  })

  it("names the line of an unknown key, a bad value or a repeated key", () => {
    expect(refused("local_ip = 1.2.3.4\n\nbrpc_raft_port = 1\n")).toBe("node_mgr.cnf line 3: unknown key `brpc_raft_port`")
    expect(refused("local_ip = 1.2.3.4\nbrpc_http_port = 70000\n")).toBe(
      "node_mgr.cnf line 2: `brpc_http_port` must be a port number 1..65535, got '70000'"
    )
    expect(refused("local_ip = 1.2.3.4\ninstance_port_range = 9-3\n")).toMatch(/^node_mgr.cnf line 2: `instance_port_range` must be a port range/)
    expect(refused("local_ip = 1.2.3.4\nthread_work_interval = 0\n")).toMatch(/line 2: `thread_work_interval` must be a number of seconds/)
    expect(refused("local_ip = 1.2.3.4\nreplication_password = a'b\n")).toMatch(/line 2: `replication_password` must be 1..64 characters/)
    expect(refused("local_ip = 1.2.3.4\nlocal_ip = 1.2.3.5\n")).toBe("node_mgr.cnf line 2: duplicate key `local_ip` (first set on line 1)")
    expect(refused("local_ip = my-host\n")).toMatch(/line 1: `local_ip` must be an IPv4 address/)
    expect(refused("brpc_http_port = 1\n")).toBe("node_mgr.cnf: missing required key `local_ip`")
    expect(refused("local_ip\n")).toMatch(/line 1: expected `name = value`/)
  })

  it("refuses roots too long for a unix socket below them, and a state directory inside a root", () => {
    expect(refused(`local_ip = 1.2.3.4\nstorage_data_root = /${"x".repeat(100)}\n`)).toMatch(
      /line 2: `storage_data_root` is too long for a unix socket/
    )
    expect(refused("local_ip = 1.2.3.4\nstorage_data_root = /d\nnode_mgr_tmp_data_path = /d/state\n")).toMatch(
      /line 3: `node_mgr_tmp_data_path` must not be inside `storage_data_root`/
    )
  })

  it("documents every key in docs/node_mgr.md with its default", () => {
    const doc = fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "../../docs/node_mgr.md"), "utf8")
    for (const { key, default: value } of describeKeys()) {
      expect(doc, key).toContain(`\`${key}\``)
      if (value !== undefined) expect(doc, `${key} default`).toContain(value)
    }
    expect(describeKeys().map((k) => k.key)).toEqual(agentConfigKeys)
  })
})
