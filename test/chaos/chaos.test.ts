import { afterAll, describe, expect, it } from "vitest"
import { killAllStarted } from "../integration/harness.js"
import { Prng } from "../sim/prng.js"
import { generate, klustronShapeProblem, parseResponse, runFuzz } from "./fuzz.js"
import { killActive, runChaos } from "./run.js"

/**
 * The CI set of the Jepsen-style suite: a few fixed seeds of chaos on 3 real processes, then a
 * fuzz of hostile requests under faults. Each run kills everything it started (by pid) before it
 * returns; afterAll is the safety net. A failing run leaves its report under .chaos-failures/
 * and its findings in the assertion message. The long soak is `npm run chaos -- --runs 100`.
 *
 * Budget on 2 cores: each chaos seed is 25 s of faults plus ~10 s of start, heal, final reads,
 * checks and audit; the fuzz ~25 s: about 2.5 minutes for the file.
 */

afterAll(async () => {
  await killActive()
  killAllStarted()
})

const seeds = [101, 202, 303]
const durationMs = 25_000

const explain = (findings: ReadonlyArray<{ checker: string; message: string; ops?: ReadonlyArray<string> }>) =>
  findings.map((f) => `[${f.checker}] ${f.message}${f.ops ? "\n    " + f.ops.slice(0, 8).join("\n    ") : ""}`).join("\n")

describe("the fuzzer's own checks", () => {
  it("knows a well-formed Klustron failure from a malformed one", () => {
    const ok = '{"attachment":null,"error_code":"70001","error_info":"x","status":"failed","version":"1.0"}'
    expect(klustronShapeProblem(ok, true)).toBeUndefined()
    expect(klustronShapeProblem('{"error_code":"70001","attachment":null,"error_info":"x","status":"failed","version":"1.0"}', true)).toMatch(/order/)
    expect(klustronShapeProblem('{"attachment":null,"error_code":70001,"error_info":"x","status":"failed","version":"1.0"}', true)).toMatch(/numeric/)
    expect(klustronShapeProblem('{"attachment":null,"error_code":"0","error_info":"","job_id":"3","status":"accept","version":"1.0"}', true)).toMatch(/rejected/)
    expect(klustronShapeProblem("<html>", true)).toMatch(/not JSON/)
    expect(klustronShapeProblem('{"attachment":null,"error_code":"70001","error_info":"x","status":"failed","version":"1.0","extra":1}', true)).toMatch(/unexpected/)
  })

  it("parses raw HTTP responses: content-length, chunked, incomplete, HEAD", () => {
    const r = parseResponse(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"), false, false)
    expect(r?.status).toBe(200)
    expect(r?.body.toString()).toBe("{}")
    expect(parseResponse(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}"), false, false)).toBeUndefined()
    const c = parseResponse(Buffer.from("HTTP/1.1 413 X\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), false, false)
    expect(c?.body.toString()).toBe("{}")
    expect(parseResponse(Buffer.from("HTTP/1.1 405 X\r\nContent-Length: 90\r\n\r\n"), true, false)?.status).toBe(405)
  })

  it("draws every category from a seed, reproducibly", () => {
    const categories = new Set<string>()
    for (let i = 0; i < 500; i++) categories.add(generate(new Prng(i), ["127.0.0.1:1"], ["127.0.0.1:2"]).category)
    expect([...categories].sort()).toEqual(["bad-http", "broken-json", "deep-nesting", "half-closed", "huge", "invalid-peer", "invalid-utf8", "method-path", "slow", "unknown-fields", "wrong-types"])
    const a = generate(new Prng(99), ["m"], ["h"])
    const b = generate(new Prng(99), ["m"], ["h"])
    expect(Buffer.concat(a.chunks).equals(Buffer.concat(b.chunks))).toBe(true)
  })
})

describe("chaos on real processes (CI set)", () => {
  for (const seed of seeds) {
    it(`seed ${seed}: 3 nodes, ${durationMs / 1000} s of faults: linearizable, nothing lost, one leader per term, journals agree, available after healing`, async () => {
      const r = await runChaos({ seed, nodes: 3, durationMs, log: (line) => console.log(line) })
      expect(r.stats.submits.ok, "the workload got jobs accepted").toBeGreaterThan(20)
      expect(r.stats.cycles, "the nemesis ran").toBeGreaterThan(0)
      expect(r.ok, `seed ${seed} failed (report ${r.reportPath}):\n${explain(r.findings)}`).toBe(true)
    }, 150_000)
  }

  // The others inject network faults, and with fault injection on every message takes a link's
  // queue. Without it, as in production, sends are written at once: kill, pause, transfers and
  // churn exercise that path.
  it("seed 404, process faults only, no fault injection: linearizable, nothing lost, journals agree", async () => {
    const r = await runChaos({
      seed: 404,
      nodes: 3,
      durationMs,
      kinds: ["kill", "pause", "transfer", "churn"],
      cnf: { raft_fault_injection: "false" },
      log: (line) => console.log(line)
    })
    expect(r.stats.submits.ok, "the workload got jobs accepted").toBeGreaterThan(20)
    expect(r.stats.cycles, "the nemesis ran").toBeGreaterThan(0)
    expect(r.ok, `seed 404 failed (report ${r.reportPath}):\n${explain(r.findings)}`).toBe(true)
  }, 150_000)

  it("fuzz: 2,000 hostile requests to every node under faults: no crash, no hang, well-formed replies, no state change", async () => {
    const r = await runFuzz({ seed: 7, requests: 2000, log: (line) => console.log(line) })
    expect(r.stats.sent).toBe(2000)
    expect(r.ok, `fuzz failed:\n${r.summary}`).toBe(true)
  }, 180_000)
})

describe("regressions found by the suite", () => {
  // Lease mode once counted its lease in ticks that a paused process never saw: a leader
  // resumed after SIGSTOP answered get_status from stale state. The script exits 1 on a stale read.
  it("a leader resumed after SIGSTOP does not serve a stale lease read", async () => {
    const { spawnSync } = await import("node:child_process")
    const run = spawnSync(process.execPath, ["--import", "tsx", "test/chaos/repro-lease-pause.ts"], {
      encoding: "utf8",
      timeout: 90_000
    })
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0)
    expect(run.stdout).toMatch(/no stale read/)
  }, 120_000)
})
