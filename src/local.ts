import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { parseConfig, renderConfig } from "./domain/config.js"
import { Either } from "effect"

/**
 * `npm start`: a local cluster for trying cluster_mgr out. Writes a default configuration per
 * node under the data directory when absent, starts each node as its own process, prints the
 * addresses, the leader and a curl line; Ctrl-C stops them all.
 */
/**
 * The launcher, bin/cluster_mgr.mjs, of the package this module belongs to: found from src/, from
 * dist/ or from the bundle in dist/bin/, so that every node runs as `npx cluster_mgr <cnf>` does.
 */
const bin = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  while (!fs.existsSync(path.join(dir, "package.json")) && path.dirname(dir) !== dir) dir = path.dirname(dir)
  return path.join(dir, "bin/cluster_mgr.mjs")
})()

interface LocalNode {
  readonly http: string
  readonly raft: string
  readonly cnf: string
}

const flag = (args: ReadonlyArray<string>, name: string, fallback: string): string => {
  const i = args.indexOf(name)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback
}

const writeConfigs = (dir: string, count: number): Array<LocalNode> => {
  const members = Array.from({ length: count }, (_, i) => `127.0.0.1:${58001 + 10 * i}:0,`).join("")
  return Array.from({ length: count }, (_, i) => {
    const nodeDir = path.resolve(dir, `node${i + 1}`)
    const cnf = path.join(nodeDir, "cluster_mgr.cnf")
    fs.mkdirSync(nodeDir, { recursive: true })
    if (!fs.existsSync(cnf)) {
      const text = [
        `local_ip = 127.0.0.1`,
        `brpc_http_port = ${58000 + 10 * i}`,
        `brpc_raft_port = ${58001 + 10 * i}`,
        `raft_group_member_init_config = ${members}`,
        `cluster_mgr_tmp_data_path = ${path.join(nodeDir, "data")}`,
        `log_file = ${path.join(nodeDir, "cluster_mgr.log")}`
      ].join("\n")
      const parsed = parseConfig(text, cnf)
      if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
      fs.writeFileSync(cnf, renderConfig(parsed.right))
    }
    const parsed = parseConfig(fs.readFileSync(cnf, "utf8"), cnf)
    if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
    const c = parsed.right
    return { cnf, http: `${c.local_ip}:${c.brpc_http_port}`, raft: `${c.local_ip}:${c.brpc_raft_port}` }
  })
}

const findLeader = async (nodes: ReadonlyArray<LocalNode>, timeoutMs: number): Promise<string | undefined> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    for (const n of nodes) {
      try {
        const res = await fetch(`http://${n.http}/status`, { signal: AbortSignal.timeout(500) })
        const s = (await res.json()) as { role: string }
        if (s.role === "leader") return n.http
      } catch {
        // not up yet
      }
    }
    await new Promise((r) => setTimeout(r, 200))
  }
  return undefined
}

export const runLocalCluster = (args: ReadonlyArray<string>): void => {
  const count = Number(flag(args, "--nodes", "3"))
  const dir = flag(args, "--dir", "./data")
  let nodes: Array<LocalNode>
  try {
    nodes = writeConfigs(dir, count)
  } catch (e) {
    process.stderr.write(`cluster_mgr: ${(e as Error).message}\n`)
    process.exit(2)
  }
  const children: Array<ChildProcess> = nodes.map((n) => spawn(process.execPath, [bin, n.cnf], { stdio: ["ignore", "inherit", "inherit"] }))
  let stopping = false
  const stop = () => {
    if (stopping) return
    stopping = true
    process.stdout.write("\nstopping all nodes...\n")
    for (const c of children) c.kill("SIGTERM")
  }
  process.on("SIGINT", stop)
  process.on("SIGTERM", stop)
  let alive = children.length
  for (const c of children) {
    c.on("exit", (code) => {
      alive--
      if (!stopping && code !== 0) process.stderr.write(`a node exited with code ${code}; see its log under ${dir}\n`)
      if (alive === 0) process.exit(0)
    })
  }
  for (const [i, n] of nodes.entries()) process.stdout.write(`node${i + 1}: http ${n.http}  raft ${n.raft}  (${n.cnf})\n`)
  void findLeader(nodes, 15_000).then((leader) => {
    if (stopping) return
    process.stdout.write(leader ? `leader: ${leader}\n` : "no leader yet; see the logs\n")
    process.stdout.write(
      `try:\n  curl -s -d '{"version":"1.0","job_id":"","job_type":"get_cluster_mgr_status","timestamp":"1435749309","user_name":"kunlun_test","paras":{}}' -X POST http://${nodes[0].http}/HttpService/Emit\n` +
        "Ctrl-C stops all nodes.\n"
    )
  })
}
