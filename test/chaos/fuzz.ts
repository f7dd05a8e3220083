import * as net from "node:net"
import { sleep, waitForLeader } from "../integration/harness.js"
import { Prng } from "../sim/prng.js"
import { ChaosCluster, type ChaosNode } from "./cluster.js"
import { Recorder } from "./history.js"
import { readJournal } from "./journal.js"
import { Nemesis, type NemesisKind } from "./nemesis.js"
import { active } from "./run.js"

/**
 * The fuzzer: malformed and hostile requests to every node while faults run. Every request is
 * written on a raw TCP socket (so that anything can be sent: invalid UTF-8, broken HTTP, bodies
 * dribbled byte by byte, connections half-closed mid-request). Checks:
 * - no crash: no node exits by itself, every pid alive at the end;
 * - no hang: every request is answered, or its connection closed, within a bound (unless its
 *   node was paused, killed or restarting meanwhile);
 * - every Emit reply is well formed: Klustron's keys in Klustron's order, status "failed",
 *   error_code a numeric string other than "0" (405 and 413 answers too);
 * - no rejected request changes state: no job and no membership change appears in any journal,
 *   and in a quiet phase (no fault, no legit write) the commit and applied indexes stay put.
 */

export interface FuzzOptions {
  readonly seed: number
  readonly requests: number
  readonly nodes?: number
  readonly concurrency?: number
  /** Faults while fuzzing (default: partitions, pauses, slow links, kills). */
  readonly kinds?: ReadonlyArray<NemesisKind>
  readonly log?: (line: string) => void
}

export interface FuzzFinding {
  readonly checker: string
  readonly message: string
}

export interface FuzzResult {
  readonly seed: number
  readonly ok: boolean
  readonly findings: ReadonlyArray<FuzzFinding>
  /** Observations that do not fail the run (protocol corners worth knowing), with counts. */
  readonly notes: Record<string, number>
  readonly summary: string
  readonly stats: {
    readonly sent: number
    readonly byCategory: Record<string, number>
    readonly outcomes: Record<string, number>
    readonly httpStatuses: Record<string, number>
    readonly maxAnswerMs: number
    readonly elapsedMs: number
  }
}

// ------------------------------------------------------------------------------ the requests

/** What a well-behaved node must do with a request. */
type Expect =
  /** A complete Emit POST: 200 (or 413) with a Klustron failure reply. */
  | "emit-failed"
  /** A complete, valid read-only Emit POST (get_cluster_mgr_status): 200, status done. */
  | "emit-ok"
  /** Emit path, other method: 405 with a Klustron body (HEAD: no body), OPTIONS 204. */
  | "emit-method"
  /** Anything: an HTTP answer or a closed connection, in time. */
  | "any"

export interface FuzzRequest {
  readonly category: string
  /** The bytes, in the pieces to send them in. */
  readonly chunks: ReadonlyArray<Buffer>
  readonly chunkDelayMs: number
  /** Half-close (FIN) after the last chunk instead of waiting with the write side open. */
  readonly halfClose: boolean
  readonly expect: Expect
  /** The node may close without answering (a body over the limit: it answers 413 and may reset). */
  readonly mayClose?: boolean
  /** The whole request was sent (before any half-close). */
  readonly complete?: boolean
}

const crlf = "\r\n"

const httpBytes = (method: string, path: string, body: Buffer | string | undefined, headers: Record<string, string> = {}): Buffer => {
  const b = body === undefined ? undefined : typeof body === "string" ? Buffer.from(body, "utf8") : body
  const lines = [`${method} ${path} HTTP/1.1`, "Host: 127.0.0.1", "Connection: close"]
  const hs = { ...(b !== undefined ? { "Content-Type": "application/json", "Content-Length": String(b.length) } : {}), ...headers }
  for (const [k, v] of Object.entries(hs)) lines.push(`${k}: ${v}`)
  return Buffer.concat([Buffer.from(lines.join(crlf) + crlf + crlf, "latin1"), b ?? Buffer.alloc(0)])
}

const emitPost = (body: Buffer | string, headers: Record<string, string> = {}) => httpBytes("POST", "/HttpService/Emit", body, headers)

const env = (jobType: unknown, paras: unknown = {}, extra: Record<string, unknown> = {}) => ({
  version: "1.0",
  job_id: "",
  job_type: jobType,
  timestamp: "1435749309",
  user_name: "fuzz",
  paras,
  ...extra
})

const one = (category: string, bytes: Buffer, expect: Expect): FuzzRequest => ({ category, chunks: [bytes], chunkDelayMs: 0, halfClose: false, expect })

/** Peers the validator must refuse (for add_peer: a well-formed non-member would be accepted). */
const badPeers: ReadonlyArray<unknown> = [
  "", "abc", "1.2.3.4", "1.2.3.4:", ":1", "1.2.3.4:0", "1.2.3.4:65536", "1.2.3.4:-1", "999.1.1.1:80", "1.2.3.4:01",
  "[::1]:80", "::1:80", " 1.2.3.4:80", "1.2.3.4:80 ", "a_b:80", "-a:80", "1.2.3.256:80", "1.2.3:80", "1.2.3.4:80:0",
  "1.2.3.4:8o", "x".repeat(300) + ":80", "1.2.3.4\u0000:80", "１.２.３.４:80", 12345, null, [], {}, true, 1.5, "%31.2.3.4:80"
]

const tasks = ["add_peer", "remove_peer", "transfer_leader"]

const hugeString = (rng: Prng, n: number): string => {
  const alphabet = Array.from("abcdefghijklmnopqrstuvwxyz0123456789\"\\{}[]:,é€😀")
  let s = ""
  const unit = Array.from({ length: 64 }, () => alphabet[rng.int(alphabet.length)]).join("")
  while (s.length < n) s += unit
  return s.slice(0, n)
}

const invalidUtf8: ReadonlyArray<Buffer> = [
  Buffer.from([0xff, 0xfe]),
  Buffer.from([0xc0, 0xaf]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from([0xf4, 0x90, 0x80, 0x80]),
  Buffer.from([0x80]),
  Buffer.from([0xe2, 0x82]),
  Buffer.from([0xf0, 0x9f, 0x98]),
  Buffer.from([0x00])
]

/** One request of a category drawn from `rng`; `members` are the group's raft addresses. */
export const generate = (rng: Prng, members: ReadonlyArray<string>, httpAddrs: ReadonlyArray<string>): FuzzRequest => {
  const r = rng.int(100)
  if (r < 12) {
    // Broken JSON.
    const valid = JSON.stringify(env("raft_mission", { task_type: "transfer_leader", target_leader: "1.2.3.4:5" }))
    const variants = [
      valid.slice(0, rng.int(valid.length)),
      valid + rng.pick(["}", "]", ",", "x", "{}", "\u0000"]),
      valid.replace(/"/g, "'"),
      valid.replace(":", ""),
      "{",
      "",
      "[",
      "nul",
      "{\"job_type\":\"get_status\",}",
      "{\"job_type\":\"get_status\" \"job_id\":\"1\"}",
      "{\"job_type\":\"get_status\",\"job_type\":}",
      "\u0000\u0001\u0002",
      "{\"job_type\":NaN}",
      "{\"job_type\":\"raft_mission\",\"paras\":{\"a\":1e99999}}",
      "\ufeff" + valid.slice(0, 20),
      Array.from({ length: rng.range(1, 200) }, () => String.fromCharCode(rng.int(128))).join("")
    ]
    return one("broken-json", emitPost(rng.pick(variants)), "emit-failed")
  }
  if (r < 24) {
    // Wrong types, top level and in paras.
    const bad = () => rng.pick<unknown>([1, -1, 0, 1.5, true, false, null, [], {}, [1, 2], { a: 1 }, "", 1e308, "x"])
    const variants: Array<unknown> = [
      env(bad()),
      env("raft_mission", bad()),
      env("raft_mission", { task_type: bad(), target_leader: bad() }),
      env("get_status", {}, { job_id: bad() }),
      { ...env("get_status"), version: bad(), timestamp: bad(), user_name: bad() },
      bad(),
      [env("get_status")],
      "just a string",
      env("raft_mission", { task_type: "transfer_leader" }),
      env("raft_mission", { task_type: "add_peer" }),
      env("raft_mission", { task_type: rng.pick(tasks), peer: bad(), target_leader: bad() }),
      env("create_cluster", { nick_name: bad(), shards: bad(), nodes: bad() }),
      env("get_status", {}, { job_id: String(10_000_000 + rng.int(1000)) }),
      { job_type: "get_status" },
      {}
    ]
    return one("wrong-types", emitPost(JSON.stringify(rng.pick(variants))), "emit-failed")
  }
  if (r < 32) {
    // Huge strings: under the body limit (validated, echoed only as an excerpt) and over it (413).
    const n = rng.pick([10_000, 200_000, 900_000, 1_100_000, 3_000_000])
    const s = hugeString(rng, n)
    const variants = [
      env(s),
      env("raft_mission", { task_type: "add_peer", peer: s }),
      env("raft_mission", { task_type: s }),
      env("get_status", {}, { job_id: s }),
      env("raft_mission", { task_type: "transfer_leader", target_leader: "1.2.3.4:5", junk: s })
    ]
    return { ...one("huge", emitPost(JSON.stringify(rng.pick(variants))), "emit-failed"), mayClose: n > 1_000_000 }
  }
  if (r < 40) {
    // Deep nesting, in paras or as the whole body.
    const depth = rng.pick([100, 5_000, 50_000, 200_000])
    const kind = rng.int(4)
    let body: string
    if (kind === 0) body = `{"job_type":"raft_mission","paras":${"{\"a\":".repeat(depth)}1${"}".repeat(depth)}}`
    else if (kind === 1) body = `{"job_type":"raft_mission","paras":{"task_type":"add_peer","peer":${"[".repeat(depth)}${"]".repeat(depth)}}}`
    else if (kind === 2) body = `${"[".repeat(depth)}${"]".repeat(depth)}`
    else body = `{"job_type":${"{\"x\":".repeat(depth)}null${"}".repeat(depth)}}`
    return { ...one("deep-nesting", emitPost(body), "emit-failed"), mayClose: body.length > 1_000_000 }
  }
  if (r < 48) {
    // Unknown fields, prototype keys; raft_mission paras always invalid (bad peer, or a non-member).
    const extra: Record<string, unknown> = {}
    for (let i = rng.int(50); i > 0; i--) extra[`x${rng.int(1_000_000)}`] = rng.pick<unknown>([1, "a", null, {}, []])
    const variants = [
      `{"__proto__":{"job_type":"get_cluster_mgr_status"},"job_type":"raft_mission","paras":{"task_type":"add_peer","peer":"x"}}`,
      `{"job_type":"raft_mission","paras":{"__proto__":{"task_type":"add_peer","peer":"1.2.3.4:5"}}}`,
      `{"job_type":"raft_mission","paras":{"task_type":"remove_peer","peer":"1.2.3.4:5","constructor":{"prototype":{"x":1}}}}`,
      `{"constructor":{"name":"x"},"job_type":"toString"}`,
      `{"job_type":"hasOwnProperty"}`,
      JSON.stringify({ ...env("raft_mission", { task_type: "remove_peer", peer: "1.2.3.4:5", ...extra }), ...extra }),
      JSON.stringify({ ...env("raft_mission", { task_type: "transfer_leader", target_leader: "127.0.0.1:1", ...extra }), ...extra }),
      JSON.stringify({ ...env("get_status", {}, { job_id: "0" }), ...extra })
    ]
    return one("unknown-fields", emitPost(rng.pick(variants)), "emit-failed")
  }
  if (r < 58) {
    // Invalid peers (and members or non-members where the validator must refuse them).
    const task = rng.pick(tasks)
    let peer: unknown = rng.pick(badPeers)
    if (task === "add_peer" && rng.chance(0.3)) peer = rng.pick(members) // already a member
    if (task !== "add_peer" && rng.chance(0.3)) peer = rng.pick([...httpAddrs, "127.0.0.1:1", "10.0.0.1:58001", "localhost:58001"]) // not a member
    const paras = task === "transfer_leader" ? { task_type: task, target_leader: peer } : { task_type: task, peer }
    return one("invalid-peer", emitPost(JSON.stringify(env("raft_mission", paras))), "emit-failed")
  }
  if (r < 66) {
    // Invalid UTF-8 in the job type, the paras, a key.
    const bytes = rng.pick(invalidUtf8)
    const parts: Array<Buffer> = rng.pick([
      [Buffer.from(`{"job_type":"raft_mission`), bytes, Buffer.from(`","paras":{}}`)],
      [Buffer.from(`{"job_type":"raft_mission","paras":{"task_type":"add_peer","peer":"1.2.3.4:5`), bytes, Buffer.from(`"}}`)],
      [Buffer.from(`{"job_type":"get_status","job_id":"`), bytes, Buffer.from(`"}`)],
      [Buffer.from(`{"`), bytes, Buffer.from(`":1,"job_type":"raft_mission"}`)],
      [bytes, Buffer.from(`{"job_type":"get_status"}`)],
      [Buffer.from(`{"job_type":"get_status","job_id":"\\ud800"}`)],
      [Buffer.from(`{"job_type":"\\udfff\\ud800","paras":{}}`)]
    ])
    return one("invalid-utf8", emitPost(Buffer.concat(parts)), "emit-failed")
  }
  if (r < 76) {
    // Wrong methods and paths.
    const body = JSON.stringify(env("get_status", {}, { job_id: "1" }))
    const variants: Array<[string, string, string | undefined, Expect]> = [
      ["GET", "/HttpService/Emit", undefined, "emit-method"],
      ["PUT", "/HttpService/Emit", body, "emit-method"],
      ["DELETE", "/HttpService/Emit", undefined, "emit-method"],
      ["PATCH", "/HttpService/Emit", body, "emit-method"],
      ["HEAD", "/HttpService/Emit", undefined, "emit-method"],
      ["OPTIONS", "/HttpService/Emit", undefined, "emit-method"],
      ["TRACE", "/HttpService/Emit", undefined, "any"],
      ["FOO", "/HttpService/Emit", undefined, "any"],
      ["POST", "/HttpService/Emit/", body, "any"],
      ["POST", "/HttpService/emit", body, "any"],
      ["POST", "//HttpService/Emit", body, "any"],
      ["POST", "/HttpService/../HttpService/Emit", body, "any"],
      ["POST", "/%48ttpService/Emit", body, "any"],
      ["POST", "/HttpService/Emit?x=1&y=%ff", JSON.stringify(env("raft_mission", { task_type: "add_peer", peer: "x" })), "any"],
      ["POST", "/status", body, "any"],
      ["POST", "/metrics", body, "any"],
      ["GET", "/debug/faults", undefined, "any"],
      ["POST", "/debug/faults", rng.pick(["{", "{}", "{\"action\":\"nuke\"}", "{\"action\":\"block\"}", "{\"action\":\"delay\",\"peer\":\"1.2.3.4:5\",\"ms\":\"x\"}", "{\"action\":\"delay\",\"peer\":\"1.2.3.4:5\",\"ms\":-1}", "[]", "null"]), "any"],
      ["GET", "/", undefined, "any"],
      ["GET", "*", undefined, "any"],
      ["GET", "http://evil.example/HttpService/Emit", undefined, "any"],
      ["GET", "/" + "a".repeat(rng.pick([1000, 20_000, 100_000])), undefined, "any"],
      ["GET", "/status?" + "x=1&".repeat(1000), undefined, "any"],
      ["GET", "/metrics", undefined, "any"]
    ]
    const [method, path, b, expect] = rng.pick(variants)
    return one("method-path", httpBytes(method, path, b), expect)
  }
  if (r < 84) {
    // Broken HTTP framing and headers.
    const body = JSON.stringify(env("get_status", {}, { job_id: "1" }))
    const variants: Array<Buffer> = [
      Buffer.from(`POST /HttpService/Emit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\n${body}`),
      Buffer.from(`POST /HttpService/Emit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: -1\r\n\r\n${body}`),
      Buffer.from(`POST /HttpService/Emit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 99999999999\r\n\r\n${body}`),
      Buffer.from(`POST /HttpService/Emit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n${body}`),
      Buffer.from(`POST /HttpService/Emit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n${body}`),
      Buffer.from(`POST /HttpService/Emit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`),
      Buffer.from(`POST /HttpService/Emit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`),
      Buffer.from(`POST /HttpService/Emit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`),
      Buffer.from(`POST /HttpService/Emit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Cluster-Mgr-Forwarded: 1\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`),
      Buffer.from(`POST /HttpService/Emit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ${"a".repeat(20_000)}\r\nContent-Length: 2\r\n\r\n{}`),
      Buffer.from(`POST /HttpService/Emit HTTP/9.9\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}`),
      Buffer.from(`POST /HttpService/Emit\r\n\r\n`),
      Buffer.from(`\r\n\r\n\r\n`),
      Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n`),
      Buffer.from(`POST /HttpService/Emit HTTP/1.1\nHost: x\nConnection: close\nContent-Length: 2\n\n{}`),
      Buffer.concat([Buffer.from("POST /HttpService/Emit HTTP/1.1\r\nHost: "), Buffer.from([0xff, 0x00, 0xfe]), Buffer.from("\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")]),
      Buffer.from(Array.from({ length: rng.range(1, 3000) }, () => rng.int(256)))
    ]
    return { category: "bad-http", chunks: [rng.pick(variants)], chunkDelayMs: 0, halfClose: true, expect: "any" }
  }
  if (r < 92) {
    // Half-closed connections: the request cut anywhere, then FIN.
    // A refused add_peer is answered at once; get_status of a missing job needs a ReadIndex round.
    const body = rng.chance(0.5) ? env("raft_mission", { task_type: "add_peer", peer: rng.pick(badPeers) }) : env("get_status", {}, { job_id: String(10_000_000 + rng.int(1000)) })
    const full = emitPost(JSON.stringify(body))
    const cut = rng.chance(0.25) ? full.length : rng.int(full.length)
    return { category: "half-closed", chunks: [full.subarray(0, cut)], chunkDelayMs: 0, halfClose: true, expect: "any", complete: cut === full.length }
  }
  // Slow: a complete request dribbled out a few bytes at a time.
  const full = emitPost(JSON.stringify(env("raft_mission", { task_type: "remove_peer", peer: rng.pick(badPeers) })))
  const size = rng.pick([1, 1, 3, 17])
  const chunks: Array<Buffer> = []
  for (let i = 0; i < full.length; i += size) chunks.push(full.subarray(i, i + size))
  return { category: "slow", chunks, chunkDelayMs: rng.range(1, 8), halfClose: rng.chance(0.3), expect: "emit-failed", complete: true }
}

// ----------------------------------------------------------------------------- raw exchange

export interface RawResponse {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: Buffer
}

export interface Exchange {
  /** "answered": a full HTTP response; "closed": the connection closed without one; "refused"; "timeout". */
  readonly outcome: "answered" | "closed" | "refused" | "timeout"
  readonly response: RawResponse | undefined
  readonly ms: number
  readonly error?: string
}

/** Parses one HTTP/1.1 response from `data`; undefined while incomplete. */
export const parseResponse = (data: Buffer, isHead: boolean, closed: boolean): RawResponse | undefined => {
  const end = data.indexOf("\r\n\r\n")
  if (end < 0) return undefined
  const head = data.subarray(0, end).toString("latin1").split("\r\n")
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0])
  if (m === null) return undefined
  const headers: Record<string, string> = {}
  for (const line of head.slice(1)) {
    const i = line.indexOf(":")
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
  }
  const status = Number(m[1])
  const rest = data.subarray(end + 4)
  if (isHead || status === 204 || status === 304 || (status >= 100 && status < 200)) return { status, headers, body: Buffer.alloc(0) }
  if (headers["content-length"] !== undefined) {
    const n = Number(headers["content-length"])
    return rest.length >= n ? { status, headers, body: rest.subarray(0, n) } : undefined
  }
  if ((headers["transfer-encoding"] ?? "").toLowerCase().includes("chunked")) {
    const parts: Array<Buffer> = []
    let at = 0
    for (;;) {
      const lineEnd = rest.indexOf("\r\n", at)
      if (lineEnd < 0) return undefined
      const size = parseInt(rest.subarray(at, lineEnd).toString("latin1"), 16)
      if (Number.isNaN(size)) return { status, headers, body: Buffer.concat(parts) }
      if (size === 0) return { status, headers, body: Buffer.concat(parts) }
      if (rest.length < lineEnd + 2 + size + 2) return undefined
      parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size))
      at = lineEnd + 2 + size + 2
    }
  }
  return closed ? { status, headers, body: rest } : undefined
}

/** Sends the request's chunks on a fresh connection; resolves on a full response, a close, or `timeoutMs`. */
export const exchange = (address: string, req: FuzzRequest, timeoutMs: number): Promise<Exchange> =>
  new Promise((resolve) => {
    const started = performance.now()
    const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))]
    const isHead = req.chunks[0]?.subarray(0, 5).toString("latin1") === "HEAD "
    const socket = net.connect({ host, port, allowHalfOpen: true })
    let data = Buffer.alloc(0)
    let settled = false
    let error: string | undefined
    const finish = (outcome: Exchange["outcome"], response?: RawResponse) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve({ outcome, response, ms: performance.now() - started, ...(error !== undefined ? { error } : {}) })
    }
    const timer = setTimeout(() => finish("timeout"), timeoutMs)
    socket.on("data", (d: Buffer) => {
      data = Buffer.concat([data, d])
      const r = parseResponse(data, isHead, false)
      if (r !== undefined) finish("answered", r)
    })
    const onClose = () => {
      const r = parseResponse(data, isHead, true)
      finish(r !== undefined ? "answered" : "closed", r)
    }
    socket.on("end", onClose)
    socket.on("close", onClose)
    socket.on("error", (e: NodeJS.ErrnoException) => {
      error = `${e.code ?? ""} ${e.message}`
      if (e.code === "ECONNREFUSED") finish("refused")
      else onClose()
    })
    socket.once("connect", async () => {
      for (let i = 0; i < req.chunks.length && !settled; i++) {
        if (!socket.writable) break
        socket.write(req.chunks[i])
        if (req.chunkDelayMs > 0) await sleep(req.chunkDelayMs)
      }
      if (req.halfClose && !settled && socket.writable) socket.end()
    })
  })

// ----------------------------------------------------------------------------------- checks

/** A \\uD800-\\uDBFF escape not followed by a low one, or a low one not preceded by a high one. */
const loneSurrogate = /\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}/

const replyKeys = ["attachment", "error_code", "error_info", "job_id", "status", "version"]
const statuses = new Set(["accept", "not_started", "ongoing", "done", "failed"])

/** Why a body is not a well-formed Klustron reply, or undefined. */
export const klustronShapeProblem = (body: string, wantFailed: boolean): string | undefined => {
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    return `not JSON: ${body.slice(0, 120)}`
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return `not a JSON object: ${body.slice(0, 120)}`
  const keys = Object.keys(json)
  const order = keys.map((k) => replyKeys.indexOf(k))
  if (order.some((i) => i < 0)) return `unexpected key(s) ${keys.filter((k) => !replyKeys.includes(k)).join(",")}`
  if (order.some((v, i) => i > 0 && v <= order[i - 1])) return `keys out of Klustron's order: ${keys.join(",")}`
  const j = json as Record<string, unknown>
  for (const k of ["attachment", "error_code", "error_info", "status", "version"]) if (!(k in j)) return `missing ${k}`
  if (typeof j.error_code !== "string" || !/^\d+$/.test(j.error_code)) return `error_code not a numeric string: ${JSON.stringify(j.error_code)}`
  if (typeof j.error_info !== "string") return "error_info not a string"
  if (typeof j.status !== "string" || !statuses.has(j.status)) return `bad status ${JSON.stringify(j.status)}`
  if (j.version !== "1.0") return `version ${JSON.stringify(j.version)}`
  if (wantFailed && j.status !== "failed") return `a rejected request got status ${j.status}: ${body.slice(0, 200)}`
  if (j.status === "failed" && j.error_code === "0") return "status failed with error_code 0"
  if (body.length > 4096) return `reply of ${body.length} bytes (a hostile input echoed?)`
  return undefined
}

/** The problem with an answer to `req`, or undefined. */
const answerProblem = (req: FuzzRequest, res: RawResponse): string | undefined => {
  const body = res.body.toString("utf8")
  switch (req.expect) {
    case "emit-failed":
      if (res.status === 200 || res.status === 413) return klustronShapeProblem(body, true)
      if (res.status === 400 || res.status === 431) return undefined // the HTTP parser refused the framing
      return `HTTP ${res.status} to an Emit POST: ${body.slice(0, 200)}`
    case "emit-ok":
      return res.status === 200 ? klustronShapeProblem(body, false) : `HTTP ${res.status}`
    case "emit-method":
      if (res.status === 204) return undefined
      if (res.status !== 405) return `HTTP ${res.status} for another method on the Emit path`
      return body === "" ? undefined : klustronShapeProblem(body, true)
    case "any":
      if (res.status >= 500) return `HTTP ${res.status}: ${body.slice(0, 200)}`
      return undefined
  }
}

// -------------------------------------------------------------------------------------- run

const bump = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1)

const stateOf = async (cluster: ChaosCluster) => {
  const ss = await cluster.statuses()
  return ss.map((s) => ({ node: s.node, term: s.term, commit: s.commit_index, applied: s.applied_index, voters: [...s.voters].sort().join(",") }))
}

export const runFuzz = async (options: FuzzOptions): Promise<FuzzResult> => {
  const started = Date.now()
  const log = options.log ?? (() => {})
  const rng = new Prng(options.seed)
  const cluster = new ChaosCluster({
    nodes: options.nodes ?? 3,
    spare: false,
    cnf: { raft_election_timeout_ms: 400, raft_heartbeat_interval_ms: 50, raft_tick_ms: 10 }
  })
  active.add(cluster)
  const findings: Array<FuzzFinding> = []
  const byCategory: Record<string, number> = {}
  const outcomes: Record<string, number> = {}
  const httpStatuses: Record<string, number> = {}
  let maxAnswerMs = 0
  let sent = 0
  const problems = new Map<string, number>()
  const note = (checker: string, message: string) => {
    const key = `${checker}: ${message.slice(0, 160)}`
    const n = problems.get(key) ?? 0
    problems.set(key, n + 1)
    if (n === 0) findings.push({ checker, message })
  }
  const idle: Array<net.Socket> = []
  const notes: Record<string, number> = {}
  try {
    log(`fuzz seed ${options.seed}: ${options.requests} requests, ${options.nodes ?? 3} nodes`)
    await cluster.start()
    cluster.startMonitor()
    await waitForLeader(cluster.members.map((c) => c.node), 30_000)
    const members = cluster.members.map((c) => c.node.raft)
    const httpAddrs = cluster.members.map((c) => c.node.http)

    // Idle connections held open on every node for the whole run.
    for (const c of cluster.all) {
      for (let i = 0; i < 5; i++) {
        const s = net.connect({ host: "127.0.0.1", port: c.node.spec.httpPort })
        s.on("error", () => {})
        idle.push(s)
      }
    }

    const sendOne = async (i: number, target: ChaosNode): Promise<void> => {
      const req = generate(rng.derive(`request-${i}`), members, httpAddrs)
      sent++
      bump(byCategory, req.category)
      const sendMs = req.chunks.length * (req.chunkDelayMs + 1)
      const bound = 20_000 + sendMs
      const from = cluster.now()
      const ex = await exchange(target.node.http, req, bound)
      const to = cluster.now()
      bump(outcomes, ex.outcome)
      if (ex.response !== undefined) bump(httpStatuses, String(ex.response.status))
      const disturbed = cluster.disturbed(target.node.name, from, to)
      if (ex.outcome === "answered" && loneSurrogate.test(ex.response!.body.toString("latin1"))) {
        // Input with a lone surrogate is refused unechoed (envelope.ts), so no reply holds one.
        note("reply", `${req.category} #${i} to ${target.node.name}: the reply holds a lone UTF-16 surrogate escape (${loneSurrogate.exec(ex.response!.body.toString("latin1"))?.[0] ?? "?"})`)
      }
      if (ex.outcome === "closed" && req.halfClose && req.complete === true && !disturbed) {
        bump(notes, "a complete request followed by a half-close (FIN) was closed without an answer")
      }
      if (ex.outcome === "answered") {
        maxAnswerMs = Math.max(maxAnswerMs, ex.ms - sendMs)
        const p = answerProblem(req, ex.response!)
        if (p !== undefined) note("reply", `${req.category} #${i} to ${target.node.name}: ${p} (request starts ${JSON.stringify(Buffer.concat(req.chunks).subarray(0, 160).toString("latin1"))})`)
      } else if (ex.outcome === "timeout" && !disturbed) {
        note("hang", `${req.category} #${i} to ${target.node.name}: neither answered nor closed within ${bound} ms (request starts ${JSON.stringify(Buffer.concat(req.chunks).subarray(0, 160).toString("latin1"))})`)
      } else if (ex.outcome === "closed" && !disturbed && req.expect !== "any" && !req.halfClose && req.mayClose !== true) {
        note("reply", `${req.category} #${i} to ${target.node.name}: connection closed without an answer (${ex.error ?? "no error"})`)
      } else if (ex.outcome === "refused" && !disturbed) {
        note("crash", `${target.node.name} refused a connection while it should be up`)
      }
    }

    // Phase 1, quiet: no fault, no legit write; the indexes must not move.
    const quiet = Math.max(50, Math.floor(options.requests / 10))
    // Settled: a new leader journals its election after taking office; wait until the indexes
    // stay put for a while, every node applied the leader's commit index.
    let before = await stateOf(cluster)
    for (let i = 0; i < 50; i++) {
      await sleep(300)
      const now = await stateOf(cluster)
      const same = JSON.stringify(now) === JSON.stringify(before)
      const applied = now.every((s) => s.applied === now[0].commit && s.commit === now[0].commit)
      before = now
      if (same && applied) break
    }
    let next = 0
    const workers = (count: number, limit: number) =>
      Array.from({ length: options.concurrency ?? 8 }, async (_, w) => {
        const pick = rng.derive(`worker-${w}-${count}`)
        while (next < limit) {
          const i = next++
          // Mostly nodes that run (a dead node only refuses); sometimes any node.
          const running = cluster.all.filter((c) => !c.down)
          await sendOne(i, running.length > 0 && pick.chance(0.9) ? pick.pick(running) : pick.pick(cluster.all))
        }
      })
    await Promise.all(workers(0, quiet))
    const after = await stateOf(cluster)
    const sameTerm = before.every((b) => after.find((a) => a.node === b.node)?.term === b.term)
    if (sameTerm) {
      for (const b of before) {
        const a = after.find((x) => x.node === b.node)!
        if (a.commit !== b.commit || a.applied !== b.applied) note("state", `${b.node}: commit/applied moved from ${b.commit}/${b.applied} to ${a.commit}/${a.applied} during the quiet phase (only rejected requests ran)`)
      }
    } else {
      cluster.log("quiet phase saw a term change: index comparison skipped")
    }
    log(`quiet phase: ${quiet} requests, indexes ${sameTerm ? "compared" : "not comparable (term changed)"}`)

    // Phase 2: the rest, under faults.
    const recorder = new Recorder(() => cluster.now(), `fuzz-${options.seed}`)
    const nemesis = new Nemesis(cluster, recorder, rng.derive("nemesis"), {
      // No transfer or churn: they are legit writes, and the fuzz checks that nothing writes.
      kinds: (options.kinds ?? ["partition", "pause", "slow", "kill"]).filter((k) => k !== "transfer" && k !== "churn"),
      faultMs: [1000, 4000],
      quietMs: [500, 1500],
      requestTimeoutMs: 4000
    })
    const nemesisDone = nemesis.run(Infinity)
    await Promise.all(workers(1, options.requests))
    nemesis.stop()
    await nemesisDone
    await cluster.healAll()
    await waitForLeader(cluster.members.map((c) => c.node), 30_000)
    log(`faulty phase done: ${JSON.stringify(nemesis.stats.faults)}`)

    // The end state: every process alive, every node answers, no job, no membership change.
    const end = await stateOf(cluster)
    for (const e of end) if (e.voters !== before[0].voters) note("state", `${e.node}: voters changed from ${before[0].voters} to ${e.voters}`)
    for (const c of cluster.all) if (!c.node.alive) note("crash", `${c.node.name} is not running at the end`)
    await cluster.stopMonitor()
    await cluster.stopAll()
    for (const c of cluster.all) {
      const d = readJournal(c.node.name, c.node.spec.dataDir)
      if (d.error !== undefined) note("state", `${c.node.name}: journal unreadable: ${d.error}`)
      const jobs = d.rows.filter((r) => r.type === "JobAccepted")
      if (jobs.length > 0) note("state", `${c.node.name}: ${jobs.length} job(s) created by rejected requests: ${jobs.slice(0, 5).map((j) => `${j.jobId} by ${j.userName}`).join(", ")}`)
      const changes = d.rows.filter((r) => r.type === "MembershipChanged")
      if (changes.length > 0) note("state", `${c.node.name}: ${changes.length} membership change(s) journaled`)
    }
    for (const crash of cluster.crashes) note("crash", `${crash.node} pid ${crash.pid} exited by itself: ${crash.exit}; stderr: ${crash.stderr.slice(-1500)}`)
  } catch (e) {
    findings.push({ checker: "harness", message: `fuzz run aborted: ${(e as Error).stack ?? String(e)}` })
  } finally {
    for (const s of idle) s.destroy()
    await cluster.cleanup()
    active.delete(cluster)
  }
  for (const f of findings) {
    const n = problems.get(`${f.checker}: ${f.message.slice(0, 160)}`) ?? 1
    if (n > 1) (f as { message: string }).message += ` (x${n})`
  }
  const stats = { sent, byCategory, outcomes, httpStatuses, maxAnswerMs, elapsedMs: Date.now() - started }
  const summary = [
    `fuzz seed ${options.seed}: ${findings.length === 0 ? "PASS" : `FAIL (${findings.length} finding(s))`}: ${sent} requests in ${(stats.elapsedMs / 1000).toFixed(1)} s`,
    `  categories ${JSON.stringify(byCategory)}`,
    `  outcomes ${JSON.stringify(outcomes)}, HTTP ${JSON.stringify(httpStatuses)}, slowest answer ${maxAnswerMs.toFixed(0)} ms`,
    ...findings.map((f) => `  [${f.checker}] ${f.message}`),
    ...Object.entries(notes).map(([n, c]) => `  note: ${n} (x${c})`)
  ].join("\n")
  log(summary)
  return { seed: options.seed, ok: findings.length === 0, findings, notes, summary, stats }
}
