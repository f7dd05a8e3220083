import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import type { Config } from "../../src/domain/config.js"
import { ConfigError, parseConfig, renderConfig } from "../../src/domain/config.js"

const members = "127.0.0.1:58001:0,127.0.0.1:58011:0,127.0.0.1:58021:0,"
const minimal = `local_ip = 127.0.0.1\nraft_group_member_init_config = ${members}\n`

const parsed = (text: string): Config => {
  const result = parseConfig(text)
  if (Either.isLeft(result)) throw new Error(result.left.message)
  return result.right
}

const refused = (text: string): ConfigError => {
  const result = parseConfig(text)
  if (Either.isRight(result)) throw new Error("accepted")
  return result.left
}
const messageOf = (text: string): string => refused(text).message

describe("parseConfig: accepted files", () => {
  it("fills every default around the two required keys", () => {
    expect(parsed(minimal)).toEqual({
      local_ip: "127.0.0.1",
      brpc_http_port: 58000,
      brpc_raft_port: 58001,
      raft_group_member_init_config: ["127.0.0.1:58001", "127.0.0.1:58011", "127.0.0.1:58021"],
      cluster_mgr_tmp_data_path: "./data",
      raft_tick_ms: 10,
      raft_election_timeout_ms: 1000,
      raft_heartbeat_interval_ms: 100,
      raft_snapshot_interval_entries: 2000,
      raft_snapshot_interval_sec: 60,
      raft_catchup_timeout_ms: 10000,
      raft_transfer_timeout_ms: 3000,
      http_max_body_bytes: 1048576,
      raft_group_id: "cluster_mgr",
      raft_pre_vote: true,
      raft_lease_read: false,
      raft_log_retain_entries: 5000,
      journal_retain_events: 0,
      machine_ping_interval_ms: 5000,
      machine_dead_after_misses: 3,
      node_mgr_request_timeout_ms: 120000,
      journal_retain_days: 0,
      raft_fault_injection: false
    })
  })

  it("reads a Klustron-style file: comments, mid-line comments, no spaces around =, CRLF, words after the value", () => {
    const text = [
      "# cluster_mgr config",
      "",
      "local_ip=192.168.0.135   # this node",
      "brpc_http_port = 58010",
      "brpc_raft_port = 58011",
      "raft_group_member_init_config = 192.168.0.135:58011:0,192.168.0.136:58011:0,",
      "   cluster_mgr_tmp_data_path = /data/cluster_mgr  the data dir",
      "log_file = ../log/sys_cluster_mgr.log",
      "thread_work_interval = 1",
      "check_shard_interval = 3",
      "#raft_tick_ms = 99"
    ].join("\r\n")
    expect(parsed(text)).toMatchObject({
      local_ip: "192.168.0.135",
      brpc_http_port: 58010,
      brpc_raft_port: 58011,
      raft_group_member_init_config: ["192.168.0.135:58011", "192.168.0.136:58011"],
      cluster_mgr_tmp_data_path: "/data/cluster_mgr",
      log_file: "../log/sys_cluster_mgr.log",
      thread_work_interval: 1,
      check_shard_interval: 3,
      raft_tick_ms: 10
    })
  })

  it("takes the member list with or without Klustron's trailing comma, and host names", () => {
    const text = "local_ip = localhost\nraft_group_member_init_config = localhost:58001:0,localhost:58011:0"
    expect(parsed(text).raft_group_member_init_config).toEqual(["localhost:58001", "localhost:58011"])
  })

  it("reads every key of ours", () => {
    const config = parsed(
      minimal +
        [
          "raft_tick_ms = 5",
          "raft_election_timeout_ms = 300",
          "raft_heartbeat_interval_ms = 30",
          "raft_snapshot_interval_entries = 500",
          "raft_snapshot_interval_sec = 5",
          "raft_catchup_timeout_ms = 2000",
          "raft_transfer_timeout_ms = 1500",
          "http_max_body_bytes = 65536",
          "raft_group_id = group_a",
          "raft_pre_vote = off",
          "raft_lease_read = on",
          "raft_fault_injection = 1"
        ].join("\n")
    )
    expect(config).toMatchObject({
      raft_tick_ms: 5,
      raft_election_timeout_ms: 300,
      raft_heartbeat_interval_ms: 30,
      raft_snapshot_interval_entries: 500,
      raft_snapshot_interval_sec: 5,
      raft_catchup_timeout_ms: 2000,
      raft_transfer_timeout_ms: 1500,
      http_max_body_bytes: 65536,
      raft_group_id: "group_a",
      raft_pre_vote: false,
      raft_lease_read: true,
      raft_fault_injection: true
    })
  })

  it("reads booleans as true/false/on/off/1/0 in any case", () => {
    const cases: ReadonlyArray<[string, boolean]> = [
      ["true", true],
      ["on", true],
      ["1", true],
      ["TRUE", true],
      ["false", false],
      ["Off", false],
      ["0", false]
    ]
    for (const [text, value] of cases) expect(parsed(`${minimal}raft_lease_read = ${text}`).raft_lease_read).toBe(value)
  })

  it("reads the journal retention keys: counts, 0 (the default) for no limit", () => {
    expect(parsed(minimal)).toMatchObject({ journal_retain_events: 0, journal_retain_days: 0 })
    expect(parsed(`${minimal}journal_retain_events = 100000\njournal_retain_days = 90`)).toMatchObject({
      journal_retain_events: 100000,
      journal_retain_days: 90
    })
    expect(messageOf(`${minimal}journal_retain_days = -1`)).toBe(
      "cluster_mgr.cnf line 3: `journal_retain_days` must be a non-negative integer, got '-1'"
    )
    expect(messageOf(`${minimal}journal_retain_events = 1e6`)).toBe(
      "cluster_mgr.cnf line 3: `journal_retain_events` must be a non-negative integer, got '1e6'"
    )
  })
})

describe("parseConfig: refused files name the key and the line", () => {
  it("refuses an unknown key, as Klustron aborts on one", () => {
    const error = refused(`${minimal}\nfoo = 1`)
    expect(error.message).toBe("cluster_mgr.cnf line 4: unknown key `foo`")
    expect([error.key, error.line]).toEqual(["foo", 4])
    expect(error).toBeInstanceOf(ConfigError)
  })

  it("refuses a prototype name as a key", () => {
    expect(messageOf(`${minimal}__proto__ = 1`)).toBe("cluster_mgr.cnf line 3: unknown key `__proto__`")
  })

  it("refuses a repeated key, naming both lines", () => {
    expect(messageOf(`raft_tick_ms = 5\n${minimal}raft_tick_ms = 7`)).toBe(
      "cluster_mgr.cnf line 4: duplicate key `raft_tick_ms` (first set on line 1)"
    )
  })

  it("refuses a line that is not name = value, a bad key name and a key without a value", () => {
    expect(messageOf(`${minimal}just words`)).toBe("cluster_mgr.cnf line 3: expected `name = value`, got 'just words'")
    expect(messageOf(`${minimal}bad-key = 1`)).toBe("cluster_mgr.cnf line 3: invalid key name 'bad-key'")
    expect(messageOf(`${minimal}log_file =   # nothing`)).toBe("cluster_mgr.cnf line 3: `log_file` has no value")
  })

  it("refuses a file without local_ip or without the member list", () => {
    expect(messageOf(`raft_group_member_init_config = ${members}`)).toBe(
      "cluster_mgr.cnf: missing required key `local_ip`"
    )
    expect(messageOf("local_ip = 127.0.0.1")).toBe(
      "cluster_mgr.cnf: missing required key `raft_group_member_init_config`"
    )
    expect(messageOf("")).toBe("cluster_mgr.cnf: missing required key `local_ip`")
  })

  it("refuses ports outside 1..65535 and non-integers", () => {
    for (const port of ["0", "65536", "abc", "58000.5", "-1", "1e4"]) {
      expect(messageOf(`${minimal}brpc_http_port = ${port}`)).toBe(
        `cluster_mgr.cnf line 3: \`brpc_http_port\` must be a port number 1..65535, got '${port}'`
      )
    }
  })

  it("refuses zero, negative and fractional durations and counts", () => {
    for (const value of ["0", "-5", "1.5", "ten"]) {
      expect(messageOf(`${minimal}raft_tick_ms = ${value}`)).toBe(
        `cluster_mgr.cnf line 3: \`raft_tick_ms\` must be a positive integer, got '${value}'`
      )
    }
  })

  it("refuses a boolean it cannot read", () => {
    expect(messageOf(`${minimal}raft_pre_vote = yes`)).toBe(
      "cluster_mgr.cnf line 3: `raft_pre_vote` must be true, false, on, off, 1 or 0, got 'yes'"
    )
  })

  it("refuses a local_ip that is not an address", () => {
    expect(messageOf(`local_ip = 999.0.0.1\nraft_group_member_init_config = ${members}`)).toBe(
      "cluster_mgr.cnf line 1: `local_ip` must be an IPv4 address or host name, got '999.0.0.1'"
    )
  })

  it("refuses a member list without this node's local_ip:brpc_raft_port", () => {
    expect(messageOf(`local_ip = 127.0.0.2\nraft_group_member_init_config = ${members}`)).toBe(
      "cluster_mgr.cnf line 2: `raft_group_member_init_config` must include this node, local_ip:brpc_raft_port = 127.0.0.2:58001"
    )
    expect(messageOf(`${minimal}brpc_raft_port = 58002`)).toContain("= 127.0.0.1:58002")
  })

  it("refuses malformed, non-zero-idx and repeated members, naming the entry", () => {
    const withMembers = (list: string) => messageOf(`local_ip = 127.0.0.1\nraft_group_member_init_config = ${list}`)
    expect(withMembers("127.0.0.1:58001:0,127.0.0.1:58011,")).toBe(
      "cluster_mgr.cnf line 2: `raft_group_member_init_config` entry 2 must be ip:raft_port:0, got '127.0.0.1:58011'"
    )
    expect(withMembers("127.0.0.1:58001:1,")).toBe(
      "cluster_mgr.cnf line 2: `raft_group_member_init_config` entry 1 must be ip:raft_port:0, got '127.0.0.1:58001:1'"
    )
    expect(withMembers("127.0.0.1:58001:0,,")).toBe(
      "cluster_mgr.cnf line 2: `raft_group_member_init_config` entry 2 must be ip:raft_port:0, got ''"
    )
    expect(withMembers(",")).toContain("entry 1 must be ip:raft_port:0, got ''")
    expect(withMembers("127.0.0.1:58001:0,127.0.0.1:58001:0,")).toBe(
      "cluster_mgr.cnf line 2: `raft_group_member_init_config` lists 127.0.0.1:58001 twice"
    )
  })

  it("refuses a heartbeat not shorter than the election timeout, on the line of the key set", () => {
    expect(messageOf(`${minimal}raft_heartbeat_interval_ms = 1000`)).toBe(
      "cluster_mgr.cnf line 3: `raft_heartbeat_interval_ms` (1000) must be less than `raft_election_timeout_ms` (1000)"
    )
    expect(messageOf(`${minimal}raft_election_timeout_ms = 50`)).toBe(
      "cluster_mgr.cnf line 3: `raft_heartbeat_interval_ms` (100) must be less than `raft_election_timeout_ms` (50)"
    )
  })

  it("names the file it was given", () => {
    expect(parseConfig(`${minimal}foo = 1`, "/etc/cm.cnf").pipe(Either.flip, Either.getOrThrow).message).toBe(
      "/etc/cm.cnf line 3: unknown key `foo`"
    )
  })

  it("keeps messages to one short line, even for a 1 MB value or key", () => {
    const huge = "9".repeat(1 << 20)
    for (const text of [`${minimal}raft_tick_ms = ${huge}`, `${minimal}${"k".repeat(1 << 20)} = 1`]) {
      const message = messageOf(text)
      expect(message).not.toContain("\n")
      expect(message.length).toBeLessThan(250)
    }
  })
})

describe("renderConfig", () => {
  it("renders a file that parses back to the same config", () => {
    const config = parsed(minimal)
    expect(parsed(renderConfig(config))).toEqual(config)
  })

  it("round-trips a config with every key set away from its default", () => {
    const config = parsed(
      [
        "local_ip = 10.0.0.7",
        "brpc_http_port = 1",
        "brpc_raft_port = 65535",
        "raft_group_member_init_config = 10.0.0.7:65535:0,cm-b.local:9000:0",
        "cluster_mgr_tmp_data_path = /var/lib/cluster_mgr",
        "log_file = /var/log/cm.log",
        "thread_work_interval = 2",
        "check_shard_interval = 4",
        "raft_tick_ms = 1",
        "raft_election_timeout_ms = 20",
        "raft_heartbeat_interval_ms = 19",
        "raft_snapshot_interval_entries = 1",
        "raft_snapshot_interval_sec = 1",
        "raft_catchup_timeout_ms = 1",
        "raft_transfer_timeout_ms = 1",
        "http_max_body_bytes = 1",
        "raft_group_id = g",
        "raft_pre_vote = false",
        "raft_lease_read = true",
        "raft_fault_injection = true"
      ].join("\n")
    )
    const text = renderConfig(config)
    expect(parsed(text)).toEqual(config)
    expect(text).toContain("raft_group_member_init_config = 10.0.0.7:65535:0,cm-b.local:9000:0,\n")
  })

  it("documents every key it writes with a comment line above it", () => {
    const lines = renderConfig(parsed(`${minimal}log_file = cm.log`)).split("\n")
    const keyLines = lines.flatMap((line, i) => (/^[a-z_]+ = /.test(line) ? [i] : []))
    expect(keyLines.length).toBe(24)
    for (const i of keyLines) expect(lines[i - 1]).toMatch(/^# \S.{10,}/)
  })

  it("leaves out optional keys that are unset", () => {
    expect(renderConfig(parsed(minimal))).not.toContain("log_file")
  })
})
