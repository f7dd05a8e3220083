import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import type { Command } from "../../src/domain/emit/commands.js"
import { Command as CommandSchema, decodeCommand, isHost, splitEndpoint } from "../../src/domain/emit/commands.js"
import type { JobType } from "../../src/domain/emit/envelope.js"
import { decodeEmitBody, jobTypes } from "../../src/domain/emit/envelope.js"

type Paras = Record<string, unknown>

const decode = (jobType: string, paras: Paras = {}, jobId?: unknown) =>
  Either.flatMap(
    decodeEmitBody(JSON.stringify({ job_type: jobType, job_id: jobId, paras })),
    decodeCommand
  )

const ok = (jobType: string, paras: Paras = {}, jobId?: unknown): Command => {
  const result = decode(jobType, paras, jobId)
  if (Either.isLeft(result)) throw new Error(`refused: ${result.left.info}`)
  return result.right
}

const info = (jobType: string, paras: Paras = {}, jobId?: unknown): string => {
  const result = decode(jobType, paras, jobId)
  if (Either.isRight(result)) throw new Error(`accepted: ${JSON.stringify(result.right)}`)
  expect(result.left.code).toBe("70001")
  return result.left.info
}

/** A valid request of every job type, with its paras as Klustron sends them (strings). */
const samples: { readonly [K in JobType]: Paras } = {
  raft_mission: { task_type: "add_peer", peer: "127.0.0.2:59001" },
  get_status: {},
  get_cluster_mgr_status: {},
  create_machine: {
    hostaddr: "192.168.0.10",
    machine_type: "storage",
    rack_id: "1",
    datadir: "/kunlun/storage_datadir",
    logdir: "/kunlun/storage_logdir",
    wal_log_dir: "/kunlun/storage_waldir",
    total_mem: "16384",
    total_cpu_cores: "8"
  },
  delete_machine: { hostaddr: "192.168.0.10", machine_type: "computer" },
  update_machine: { hostaddr: "192.168.0.10", total_mem: "32768", nodemgr_port: "58010" },
  get_machines: {},
  create_cluster: {
    nick_name: "orders",
    ha_mode: "rbr",
    shards: "2",
    nodes: "3",
    comps: "1",
    max_storage_size: "20",
    max_connections: "6",
    cpu_cores: "8",
    innodb_size: "1",
    storage_iplists: ["192.168.0.10", "192.168.0.11"],
    computer_iplists: ["192.168.0.12"]
  },
  delete_cluster: { cluster_id: "3" },
  add_shards: { cluster_id: "3", shards: "1", nodes: "3" },
  delete_shard: { cluster_id: "3", shard_id: "4" },
  add_comps: { cluster_id: "3", comps: "2" },
  delete_comp: { cluster_id: "3", comp_id: "5" },
  add_nodes: { cluster_id: "3", nodes: "1", shard_id: "4" },
  delete_node: { cluster_id: "3", shard_id: "4", hostaddr: "192.168.0.11", port: "57003" },
  control_instance: { hostaddr: "192.168.0.11", port: "57003", control: "restart" },
  manual_switch: { cluster_id: "3", shard_id: "4", master_hostaddr: "192.168.0.11_57003" },
  rebuild_node: {
    cluster_id: "3",
    shard_id: "4",
    rb_nodes: [{ hostaddr: "192.168.0.11", port: "57003", need_backup: "0", hdfs_host: "hdfs", pv_limit: "10" }]
  },
  expand_cluster: { cluster_id: "3", src_shard_id: "4", dst_shard_id: "5", table_list: ["postgres_$$_public.t1"] },
  manual_backup_cluster: { cluster_id: "3" },
  cluster_restore: { src_cluster_id: "3", dst_cluster_id: "6", restore_time: "2024-02-29 23:59:00" },
  get_meta_summary: {},
  get_cluster_detail: { cluster_name: "cluster_1" },
  get_cluster_summary: {},
  get_backup_storage: {},
  get_variable: { hostaddr: "192.168.0.11", port: "57003", variable_name: "max_connections" },
  set_variable: { hostaddr: "192.168.0.11", port: "57003", variable_name: "max_connections", value: "1000" },
  logical_backup: {
    cluster_id: "3",
    backup_type: "table",
    backup: [{ db_table: "postgres_$$_public.t1", backup_time: "01:00:00-02:00:00" }]
  },
  logical_restore: {
    src_cluster_id: "3",
    dst_cluster_id: "6",
    restore_type: "db",
    restore: [{ db_table: "postgres", restore_time: "2024-01-31 10:00:00" }]
  },
  table_repartition: {
    src_cluster_id: "3",
    dst_cluster_id: "6",
    repartition_tables: "postgres_$$_public.t1=>postgres_$$_public.t2,postgres_$$_public.t3=>postgres_$$_public.t4"
  }
}

const sample = (jobType: JobType) => ok(jobType, samples[jobType], jobType === "get_status" ? "12" : undefined)

describe("raft_mission", () => {
  it("decodes transfer_leader, add_peer and remove_peer into typed commands", () => {
    expect(ok("raft_mission", { task_type: "transfer_leader", target_leader: "127.0.0.1:59001" })).toEqual({
      _tag: "raft_mission",
      task_type: "transfer_leader",
      target_leader: "127.0.0.1:59001"
    })
    expect(ok("raft_mission", { task_type: "add_peer", peer: "127.0.0.2:59001" })).toEqual({
      _tag: "raft_mission",
      task_type: "add_peer",
      peer: "127.0.0.2:59001"
    })
    expect(ok("raft_mission", { task_type: "remove_peer", peer: "localhost:59001" })).toEqual({
      _tag: "raft_mission",
      task_type: "remove_peer",
      peer: "localhost:59001"
    })
  })

  it("names task_type when it is missing, unknown or not a string", () => {
    expect(info("raft_mission")).toBe("paras.task_type is missing")
    expect(info("raft_mission", { task_type: "promote" })).toBe(
      "paras.task_type must be one of transfer_leader|add_peer|remove_peer, got 'promote'"
    )
    expect(info("raft_mission", { task_type: { a: 1 } })).toBe(
      "paras.task_type must be one of transfer_leader|add_peer|remove_peer, got an object"
    )
  })

  it("needs target_leader for transfer_leader and peer for add_peer and remove_peer", () => {
    expect(info("raft_mission", { task_type: "transfer_leader", peer: "127.0.0.1:1" })).toBe(
      "paras.target_leader is missing"
    )
    expect(info("raft_mission", { task_type: "add_peer" })).toBe("paras.peer is missing")
    expect(info("raft_mission", { task_type: "remove_peer", target_leader: "127.0.0.1:1" })).toBe(
      "paras.peer is missing"
    )
  })

  it("names the field and echoes the value when a peer is not ip:port", () => {
    expect(info("raft_mission", { task_type: "add_peer", peer: "abc" })).toBe(
      "paras.peer must be ip:port, got 'abc'"
    )
    expect(info("raft_mission", { task_type: "transfer_leader", target_leader: 59001 })).toBe(
      "paras.target_leader must be ip:port, got 59001"
    )
  })

  it("accepts IPv4 quads and host names with a port 1..65535", () => {
    const good = ["127.0.0.1:59001", "0.0.0.0:1", "255.255.255.255:65535", "localhost:58001", "cm-2.dc1.example.com:80"]
    for (const peer of good) {
      expect(ok("raft_mission", { task_type: "add_peer", peer })).toMatchObject({ peer })
    }
  })

  it("refuses malformed addresses: bad octets, bad ports, missing halves, IPv6", () => {
    const bad = [
      "",
      "127.0.0.1",
      ":59001",
      "127.0.0.1:",
      "256.0.0.1:1",
      "1.2.3:1",
      "1.2.3.4.5:1",
      "01.2.3.4:1",
      "127.0.0.1:0",
      "127.0.0.1:65536",
      "127.0.0.1:080",
      "127.0.0.1:5x",
      "127.0.0.1:-1",
      "-host:1",
      "host-:1",
      "a..b:1",
      "::1:59001",
      "127.0.0.1:59001:0",
      " 127.0.0.1:59001"
    ]
    for (const peer of bad) {
      expect(info("raft_mission", { task_type: "add_peer", peer })).toBe(`paras.peer must be ip:port, got '${peer}'`)
    }
  })

  it("cannot be turned into another command by a _tag key in paras", () => {
    expect(ok("raft_mission", { task_type: "add_peer", peer: "127.0.0.1:1", _tag: "create_cluster" })._tag).toBe(
      "raft_mission"
    )
  })
})

describe("address helpers", () => {
  it("tell hosts from all-digit names that are not IPv4", () => {
    expect(["10.0.0.1", "localhost", "a-b.c", "x1.y2"].every(isHost)).toBe(true)
    expect(["10.0.0", "999.1.1.1", "a_b", "", "a".repeat(254)].some(isHost)).toBe(false)
  })

  it("split an endpoint at its last separator", () => {
    expect(splitEndpoint("127.0.0.1:58001", ":")).toEqual({ host: "127.0.0.1", port: 58001 })
    expect(splitEndpoint("127.0.0.1_57003", "_")).toEqual({ host: "127.0.0.1", port: 57003 })
    expect(splitEndpoint("127.0.0.1", ":")).toBeUndefined()
  })
})

describe("get_status and get_cluster_mgr_status", () => {
  it("names the job by the envelope's job_id, given as digits or a number", () => {
    expect(ok("get_status", {}, "12")).toEqual({ _tag: "get_status", job_id: "12" })
    expect(ok("get_status", {}, 12)).toEqual({ _tag: "get_status", job_id: "12" })
  })

  it("names job_id when it is missing, empty or not digits", () => {
    expect(info("get_status")).toBe("job_id is missing: get_status needs the id of the job to query")
    expect(info("get_status", {}, "")).toBe("job_id must be a string of 1 to 20 digits, got ''")
    expect(info("get_status", {}, "12a")).toBe("job_id must be a string of 1 to 20 digits, got '12a'")
    expect(info("get_status", {}, -1)).toBe("job_id must be a string of 1 to 20 digits, got '-1'")
    expect(info("get_status", {}, "1".repeat(1 << 20))).toMatch(
      /^job_id must be a string of 1 to 20 digits, got '1+\.\.\. \(1048576 characters\)'$/
    )
  })

  it("takes no paras for get_cluster_mgr_status and ignores any sent", () => {
    expect(ok("get_cluster_mgr_status", { verbose: "1" })).toEqual({ _tag: "get_cluster_mgr_status" })
  })
})

describe("every job type", () => {
  it("decodes a valid Klustron request into a command tagged with its job type", () => {
    for (const jobType of jobTypes) expect(sample(jobType)._tag).toBe(jobType)
  })

  it("round-trips each decoded command through the Command schema", () => {
    for (const jobType of jobTypes) {
      const command = sample(jobType)
      const encoded = Schema.encodeSync(CommandSchema)(command)
      expect(Schema.decodeUnknownSync(CommandSchema)(encoded)).toEqual(command)
    }
  })

  it("either still decodes without a field or names that missing field", () => {
    for (const jobType of jobTypes) {
      for (const key of Object.keys(samples[jobType])) {
        const { [key]: _dropped, ...rest } = samples[jobType]
        const result = decode(jobType, rest)
        if (Either.isLeft(result)) {
          expect(result.left.info.startsWith("paras")).toBe(true)
          expect(result.left.info).toContain(key)
        }
      }
    }
  })

  it("requires the fields Klustron requires", () => {
    const required: ReadonlyArray<[JobType, ReadonlyArray<string>]> = [
      [
        "create_cluster",
        ["ha_mode", "shards", "nodes", "comps", "max_storage_size", "max_connections", "cpu_cores", "innodb_size"]
      ],
      ["create_machine", ["hostaddr", "machine_type", "total_mem", "total_cpu_cores"]],
      ["delete_node", ["cluster_id", "shard_id", "hostaddr", "port"]],
      ["control_instance", ["hostaddr", "port", "control"]],
      ["cluster_restore", ["src_cluster_id", "dst_cluster_id", "restore_time"]]
    ]
    for (const [jobType, keys] of required) {
      for (const key of keys) {
        const { [key]: _dropped, ...rest } = samples[jobType]
        expect(info(jobType, rest)).toBe(`paras.${key} is missing`)
      }
    }
  })

  it("refuses hostile values in every field with a short error naming the field", () => {
    // Raw JSON text: JSON.stringify itself overflows the stack on the deepest value.
    const hostile = [
      "[".repeat(10000) + "]".repeat(10000),
      "[".repeat(100000) + "]".repeat(100000),
      '{"a":{"b":1}}',
      "null",
      JSON.stringify("z".repeat(1 << 20))
    ]
    const placeholder = "\u0000hostile\u0000"
    for (const jobType of jobTypes) {
      for (const key of Object.keys(samples[jobType])) {
        const template = JSON.stringify({ job_type: jobType, paras: { ...samples[jobType], [key]: placeholder } })
        for (const value of hostile) {
          const body = template.replace(JSON.stringify(placeholder), value)
          const result = Either.flatMap(decodeEmitBody(body), decodeCommand)
          if (Either.isRight(result)) throw new Error(`${jobType}: paras.${key} accepted a hostile value`)
          expect(result.left.info).toContain(`paras.${key}`)
          expect(result.left.info.length).toBeLessThan(300)
        }
      }
    }
  })
})

describe("numbers sent as strings", () => {
  const cluster = (shards: unknown) => decode("create_cluster", { ...samples.create_cluster, shards })

  it("become integers, and JSON numbers are accepted too", () => {
    expect(Either.getOrThrow(cluster("2"))).toMatchObject({ shards: 2, nodes: 3, max_storage_size: 20 })
    expect(Either.getOrThrow(cluster(2))).toMatchObject({ shards: 2 })
  })

  it("must be positive decimal integers without sign, fraction, exponent, spaces or leading zeros", () => {
    for (const shards of ["0", "-1", "2.5", "1e3", " 2", "2 ", "0x10", "007", "", "99999999999999999", 0, 2.5, -3]) {
      const result = cluster(shards)
      expect(Either.isLeft(result) && result.left.info).toBe(
        `paras.shards must be a positive integer, got ${typeof shards === "string" ? `'${shards}'` : shards}`
      )
    }
  })

  it("must be a port 1..65535 where a port is expected", () => {
    expect(info("delete_node", { ...samples.delete_node, port: "70000" })).toBe(
      "paras.port must be a port number 1..65535, got '70000'"
    )
    expect(ok("delete_node", { ...samples.delete_node, port: 57003 })).toMatchObject({ port: 57003 })
  })
})

describe("literal fields", () => {
  it("name the allowed words for ha_mode, machine_type and control", () => {
    expect(info("create_cluster", { ...samples.create_cluster, ha_mode: "raft" })).toBe(
      "paras.ha_mode must be one of mgr|rbr|no_rep, got 'raft'"
    )
    expect(info("delete_machine", { ...samples.delete_machine, machine_type: "gpu" })).toBe(
      "paras.machine_type must be one of storage|computer, got 'gpu'"
    )
    expect(info("control_instance", { ...samples.control_instance, control: "kill" })).toBe(
      "paras.control must be one of start|stop|restart, got 'kill'"
    )
  })

  it("bound free text to 255 characters", () => {
    expect(ok("create_cluster", { ...samples.create_cluster, nick_name: "n".repeat(255) })).toMatchObject({
      nick_name: "n".repeat(255)
    })
    expect(info("create_cluster", { ...samples.create_cluster, nick_name: "n".repeat(256) })).toMatch(
      /^paras\.nick_name must be a non-empty string of at most 255 characters, got 'n+\.\.\. \(256 characters\)'$/
    )
  })

  it("accept each allowed word", () => {
    for (const ha_mode of ["mgr", "rbr", "no_rep"]) {
      expect(ok("create_cluster", { ...samples.create_cluster, ha_mode })).toMatchObject({ ha_mode })
    }
    for (const control of ["start", "stop", "restart"]) {
      expect(ok("control_instance", { ...samples.control_instance, control })).toMatchObject({ control })
    }
  })
})

describe("create_machine", () => {
  it("defaults port_range to 57000-58000 and validates a given one", () => {
    expect(sample("create_machine")).toMatchObject({ port_range: "57000-58000", total_mem: 16384 })
    expect(ok("create_machine", { ...samples.create_machine, port_range: "40000-40100" })).toMatchObject({
      port_range: "40000-40100"
    })
    for (const port_range of ["58000-57000", "1-2-3", "57000", "0-10", "a-b"]) {
      expect(info("create_machine", { ...samples.create_machine, port_range })).toBe(
        `paras.port_range must be a port range like 57000-58000, got '${port_range}'`
      )
    }
  })

  it("needs the directories of its machine type, naming the first one missing", () => {
    const { logdir: _logdir, ...storage } = samples.create_machine
    expect(info("create_machine", storage)).toBe("paras.logdir is missing: a storage machine needs it")
    expect(info("create_machine", { ...samples.create_machine, machine_type: "computer" })).toBe(
      "paras.comp_datadir is missing: a computer machine needs it"
    )
    expect(ok("create_machine", { ...storage, machine_type: "computer", comp_datadir: "/kunlun/comp" })).toMatchObject({
      machine_type: "computer"
    })
  })

  it("wants absolute directories", () => {
    expect(info("create_machine", { ...samples.create_machine, datadir: "data" })).toBe(
      "paras.datadir must be an absolute path, got 'data'"
    )
  })
})

describe("cluster references, lists and nested objects", () => {
  it("need cluster_id or cluster_name to name a cluster", () => {
    expect(info("delete_cluster")).toBe("paras needs cluster_id or cluster_name")
    expect(info("get_cluster_detail", { cluster_id: "x" })).toBe("paras.cluster_id must be a positive integer, got 'x'")
    expect(ok("delete_cluster", { cluster_name: "c1" })).toEqual({ _tag: "delete_cluster", cluster_name: "c1" })
  })

  it("refuse empty lists and non-lists, and point at the bad item by index", () => {
    const base = samples.create_cluster
    expect(info("create_cluster", { ...base, storage_iplists: [] })).toBe(
      "paras.storage_iplists must be a non-empty list of IPv4 addresses or host names, got an empty array"
    )
    expect(info("create_cluster", { ...base, storage_iplists: "192.168.0.10" })).toBe(
      "paras.storage_iplists must be a non-empty list of IPv4 addresses or host names, got '192.168.0.10'"
    )
    expect(info("create_cluster", { ...base, storage_iplists: ["192.168.0.10", "300.1.1.1"] })).toBe(
      "paras.storage_iplists[1] must be an IPv4 address or host name, got '300.1.1.1'"
    )
  })

  it("give the full path of a bad field inside a list of objects", () => {
    const node = samples.rebuild_node.rb_nodes as ReadonlyArray<Paras>
    expect(info("rebuild_node", { ...samples.rebuild_node, rb_nodes: [node[0], { ...node[0], port: "x" }] })).toBe(
      "paras.rb_nodes[1].port must be a port number 1..65535, got 'x'"
    )
    expect(info("rebuild_node", { ...samples.rebuild_node, rb_nodes: ["192.168.0.11"] })).toBe(
      "paras.rb_nodes[0] must be an object, got '192.168.0.11'"
    )
    expect(info("rebuild_node", { ...samples.rebuild_node, rb_nodes: [{ ...node[0], need_backup: "2" }] })).toBe(
      "paras.rb_nodes[0].need_backup must be 0 or 1, got '2'"
    )
  })

  it("accept ip_port or ip:port for manual_switch instances", () => {
    for (const master_hostaddr of ["10.0.0.1_57003", "10.0.0.1:57003"]) {
      expect(ok("manual_switch", { ...samples.manual_switch, master_hostaddr })).toMatchObject({ master_hostaddr })
    }
    expect(info("manual_switch", { ...samples.manual_switch, assign_hostaddr: "10.0.0.1" })).toBe(
      "paras.assign_hostaddr must be ip_port or ip:port, got '10.0.0.1'"
    )
  })
})

describe("time and table formats", () => {
  it("check restore times are real calendar times", () => {
    const bad = [
      "2023-02-29 10:00:00",
      "1900-02-29 10:00:00",
      "2024-04-31 00:00:00",
      "2024-13-01 00:00:00",
      "2024-00-10 00:00:00",
      "2024-01-01 24:00:00",
      "2024-01-01T10:00:00"
    ]
    for (const restore_time of bad) {
      expect(info("cluster_restore", { ...samples.cluster_restore, restore_time })).toBe(
        `paras.restore_time must be a time like 2024-01-31 23:59:00, got '${restore_time}'`
      )
    }
  })

  it("accept leap days of leap years", () => {
    for (const restore_time of ["2024-02-29 00:00:00", "2000-02-29 12:30:59"]) {
      expect(ok("cluster_restore", { ...samples.cluster_restore, restore_time })).toMatchObject({ restore_time })
    }
  })

  it("check backup windows and repartition pairs", () => {
    const backup = [{ db_table: "postgres_$$_public.t1", backup_time: "01:00-02:00" }]
    expect(info("logical_backup", { ...samples.logical_backup, backup })).toBe(
      "paras.backup[0].backup_time must be a window like 01:00:00-02:00:00, got '01:00-02:00'"
    )
    expect(info("table_repartition", { ...samples.table_repartition, repartition_tables: "t1->t2" })).toBe(
      "paras.repartition_tables must be a list like db_$$_schema.t1=>db_$$_schema.t2,..., got 't1->t2'"
    )
  })

  it("take a set_variable value given as a number as its text", () => {
    expect(ok("set_variable", { ...samples.set_variable, value: 1000 })).toMatchObject({ value: "1000" })
  })
})
