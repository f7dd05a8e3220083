import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import {
  parseVertical,
  promoteSql,
  replicating,
  restartBackoffMs,
  serverIdOf,
  setReplicaSql,
  slaveStateOf,
  sqlString,
  storageSetupSql
} from "../../src/agent/layout.js"
import { AgentJob, AgentReply, decodeRequestText, failed, jobTypes, PingInfo, requestFor, success } from "../../src/agent/protocol.js"
import { ackReports, addReport, emptyState, reportsMax } from "../../src/agent/state.js"

const refusal = (text: string): string => {
  const job = decodeRequestText(text).job
  if (Either.isRight(job)) throw new Error(`accepted: ${JSON.stringify(job.right)}`)
  return job.left
}

const accepted = (body: object) => {
  const job = decodeRequestText(JSON.stringify(body)).job
  if (Either.isLeft(job)) throw new Error(job.left)
  return job.right
}

describe("requests", () => {
  it("decode Klustron's string paras and JSON numbers alike", () => {
    expect(accepted({ job_type: "install_storage", paras: { port: "57001", innodb_buffer_pool_size: "64M" } })).toEqual({
      _tag: "install_storage",
      port: 57001,
      innodb_buffer_pool_size: "64M"
    })
    expect(accepted({ job_type: "control_instance", paras: { port: 57001, control: "stop", type: "storage" } })).toEqual({
      _tag: "control_instance",
      port: 57001,
      control: "stop",
      type: "storage"
    })
    expect(accepted({ job_type: "get_paths_space", paras: { paths: "/a,/b" } })).toEqual({ _tag: "get_paths_space", paths: ["/a", "/b"] })
    expect(accepted({ job_type: "get_paths_space", paras: { paths: ["/a"] } })).toEqual({ _tag: "get_paths_space", paths: ["/a"] })
    expect(accepted({ job_type: "ping_pong" })).toEqual({ _tag: "ping_pong" })
  })

  it("cover every job of the AgentJob union", () => {
    const tags = AgentJob.members.map((m) => (m.fields._tag.ast as unknown as { type: { literal: string } }).type.literal)
    expect([...jobTypes].sort()).toEqual(tags.sort())
  })

  it("keep the echo fields even when refused", () => {
    const decoded = decodeRequestText(JSON.stringify({ cluster_mgr_request_id: 12, task_spec_info: "t", job_type: "nope" }))
    expect(decoded.echo).toEqual({ cluster_mgr_request_id: "12", task_spec_info: "t" })
  })

  it("are refused with a reason naming the field", () => {
    expect(refusal("{")).toMatch(/^the request body is not JSON/)
    expect(refusal("[1]")).toBe("the request body must be a JSON object, got an array")
    expect(refusal("{}")).toBe("missing `job_type` in the request body")
    expect(refusal('{"job_type":5}')).toBe("`job_type` must be a non-empty string, got 5")
    expect(refusal('{"job_type":"format_disk"}')).toBe("unknown job_type: format_disk")
    expect(refusal('{"job_type":"backup_shard"}')).toBe("job_type backup_shard is not supported by this node_mgr")
    expect(refusal('{"job_type":"install_storage","paras":[]}')).toBe("`paras` must be a JSON object, got an empty array")
    expect(refusal('{"job_type":"install_storage","paras":{}}')).toBe("missing `paras.port`")
    expect(refusal('{"job_type":"install_storage","paras":{"port":"0"}}')).toBe("`paras.port` must be a port number 1..65535, got '0'")
    expect(refusal('{"job_type":"install_storage","paras":{"port":"57001","innodb_buffer_pool_size":"1T; x"}}')).toMatch(
      /^`paras.innodb_buffer_pool_size` must be a size like 128M/
    )
    expect(refusal('{"job_type":"control_instance","paras":{"port":"1","control":"kill"}}')).toBe(
      "`paras.control` must be start, stop or restart, got 'kill'"
    )
    expect(refusal('{"job_type":"set_replica","paras":{"port":"1","primary_host":"db.example","primary_port":"2"}}')).toMatch(
      /^`paras.primary_host` must be an IPv4 address/
    )
    expect(refusal('{"job_type":"get_paths_space","paras":{"paths":"relative/dir"}}')).toMatch(/^`paras.paths/)
    expect(refusal('{"job_type":"ping_pong","paras":{"__proto__":{}}}')).toBe("the key `__proto__` is not allowed in `paras`")
  })

  it("never accept shell or SQL metacharacters in a value that reaches argv or SQL", () => {
    for (const port of ["57001; rm -rf /", "$(reboot)", "57001`id`", "57001 ", "0x10", "1e3", "-1"]) {
      expect(refusal(JSON.stringify({ job_type: "install_storage", paras: { port } }))).toMatch(/^`paras.port` must be a port number/)
    }
    const host = "127.0.0.1', master_password='x"
    expect(refusal(JSON.stringify({ job_type: "set_replica", paras: { port: "1", primary_host: host, primary_port: "2" } }))).toMatch(
      /^`paras.primary_host` must be an IPv4 address/
    )
  })

  it("are built for cluster_mgr from typed jobs, and decode back to the same job", () => {
    const job = { _tag: "set_replica", port: 57002, primary_host: "10.0.0.1", primary_port: 57001 } as const
    const request = requestFor(job, "42")
    expect(request).toEqual({
      cluster_mgr_request_id: "42",
      task_spec_info: "set_replica",
      job_type: "set_replica",
      paras: { port: "57002", primary_host: "10.0.0.1", primary_port: "57001" }
    })
    expect(accepted(request)).toEqual(job)
    expect(Schema.is(AgentJob)(job)).toBe(true)
  })
})

describe("replies", () => {
  it("echo the request's id and task_spec_info and decode as AgentReply", () => {
    const echo = { cluster_mgr_request_id: "7", task_spec_info: "x" }
    expect(Schema.decodeUnknownSync(AgentReply)(success(echo, { a: 1 }))).toEqual({ ...echo, info: { a: 1 }, status: "success" })
    expect(failed(echo, "why")).toEqual({ ...echo, info: "why", status: "failed" })
    const info = { node_mgr: "0.1.0", hostaddr: "1.2.3.4", port: 58010, instances: [], reports: [] }
    expect(Schema.decodeUnknownSync(PingInfo)(info)).toEqual(info)
  })
})

describe("reports", () => {
  const input = { at: 1, kind: "storage", port: 57001, event: "restarted", detail: "d" } as const

  it("get increasing seqs; an ack drops those up to it and keeps the rest", () => {
    const three = addReport(addReport(addReport(emptyState, input), input), input)
    expect(three.reports.map((r) => r.seq)).toEqual([1, 2, 3])
    const acked = ackReports(three, 2)
    expect(acked.reports.map((r) => r.seq)).toEqual([3])
    expect(addReport(acked, input).reports.map((r) => r.seq)).toEqual([3, 4])
    expect(ackReports(acked, 2)).toBe(acked)
  })

  it("are bounded: the oldest are dropped beyond the maximum", () => {
    let state = emptyState
    for (let i = 0; i < reportsMax + 5; i++) state = addReport(state, input)
    expect(state.reports.length).toBe(reportsMax)
    expect(state.reports[0].seq).toBe(6)
  })
})

describe("storage instances", () => {
  it("get a server_id from the address's last two octets and the port, distinct per port and machine", () => {
    expect(serverIdOf("127.0.0.1", 57001)).toBe(((0 << 24) | (1 << 16) | 57001) >>> 0)
    expect(serverIdOf("10.1.200.7", 57001)).not.toBe(serverIdOf("10.1.200.8", 57001))
    expect(serverIdOf("10.1.200.7", 57001)).not.toBe(serverIdOf("10.1.200.7", 57002))
    expect(serverIdOf("10.1.255.255", 65535)).toBeLessThanOrEqual(2 ** 32 - 1)
    expect(() => serverIdOf("x'; drop", 1)).toThrow()
  })

  it("build SQL from validated values only, quoting as a second defence", () => {
    expect(sqlString("a'b\\c")).toBe("'a\\'b\\\\c'")
    expect(() => setReplicaSql("1.2.3.4'--", 1, "p")).toThrow()
    const sql = setReplicaSql("10.0.0.1", 57001, "pw")
    expect(sql).toContain("master_host='10.0.0.1', master_port=57001, master_user='repl', master_password='pw', master_use_gtid=slave_pos")
    expect(sql.indexOf("STOP SLAVE")).toBeLessThan(sql.indexOf("CHANGE MASTER"))
    expect(sql).toContain("SET GLOBAL read_only=ON")
    expect(promoteSql).toBe("STOP SLAVE;\nRESET SLAVE ALL;\nSET GLOBAL read_only=OFF;")
    expect(storageSetupSql("pw")).toMatch(/^SET SESSION sql_log_bin=0;/)
  })

  it("read SHOW SLAVE STATUS's vertical output", () => {
    const out = [
      "*************************** 1. row ***************************",
      "                Slave_IO_State: Waiting for master to send event",
      "              Slave_IO_Running: Yes",
      "             Slave_SQL_Running: Yes",
      "                 Last_IO_Error: "
    ].join("\n")
    expect(replicating(slaveStateOf(parseVertical(out)))).toBe(true)
    expect(slaveStateOf(parseVertical(""))).toEqual({ ioRunning: "No", sqlRunning: "No", lastIoError: "", lastSqlError: "" })
  })

  it("are restarted with a back-off that doubles and stops at a minute", () => {
    expect([0, 1, 2, 3].map((n) => restartBackoffMs(500, n))).toEqual([500, 1000, 2000, 4000])
    expect(restartBackoffMs(500, 40)).toBe(60_000)
  })
})
