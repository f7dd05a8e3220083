import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Data, Effect, Metric, Option } from "effect"
import type * as Http from "node:http"
import { metrics } from "../actors/metrics.js"
import { historyPath, maxPageRows } from "../actors/HistoryBackfill.js"
import { RaftNode } from "../actors/RaftNode.js"
import { FaultInjectionDisabled, type Faults, TransportControl, type TransportFaults } from "../actors/TransportControl.js"
import { forwardedHeader, makeEmit } from "./Emit.js"
import { renderPrometheus } from "./prometheus.js"

export const emitPath = "/HttpService/Emit"

/** Klustron's web console calls Emit from a browser, so it answers with permissive CORS. */
const cors = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "POST, GET, OPTIONS",
  "access-control-allow-headers": "content-type"
}

const protocolErrorBody = (info: string) => ({ attachment: null, error_code: "70001", error_info: info, status: "failed", version: "1.0" })

const protocolError = (status: number, info: string, extra: Record<string, string> = {}) =>
  HttpServerResponse.unsafeJson(protocolErrorBody(info), { status, headers: { ...cors, ...extra } })

const tooLarge = (maxBodyBytes: number) => `request body exceeds ${maxBodyBytes} bytes`

const notAllowed = Effect.succeed(protocolError(405, "only POST is served on this path", { allow: "POST, OPTIONS" }))

/**
 * The node's HTTP routes: Emit (POST; other methods 405), GET /status and GET /metrics; any
 * other path is 404. Bodies over `maxBodyBytes` get 413 before they are read in full.
 */
export const makeRouter = (maxBodyBytes: number) => Effect.flatMap(makeEmit, (emit) => routesOf(emit, maxBodyBytes))

type Emit = Effect.Effect.Success<typeof makeEmit>

const routesOf = (emit: Emit, maxBodyBytes: number) =>
  Effect.gen(function* () {

    const serveEmit = Effect.gen(function* () {
      const req = yield* HttpServerRequest.HttpServerRequest
      const length = Number(req.headers["content-length"] ?? "0")
      if (length > maxBodyBytes) return protocolError(413, tooLarge(maxBodyBytes))
      const body = yield* req.text.pipe(
        HttpServerRequest.withMaxBodySize(Option.some(maxBodyBytes)),
        Effect.either
      )
      if (body._tag === "Left") return protocolError(413, `request body exceeds ${maxBodyBytes} bytes or could not be read`)
      const started = performance.now()
      const reply = yield* emit.handle(body.right, req.headers[forwardedHeader] === "1")
      yield* Metric.update(metrics.requestLatency, (performance.now() - started) / 1000)
      return HttpServerResponse.unsafeJson(reply, { headers: cors })
    })

    const node = yield* RaftNode
    /** A page of this node's journal for a peer's history (HistoryBackfill): read-only, like /status. */
    const serveHistory = Effect.gen(function* () {
      const req = yield* HttpServerRequest.HttpServerRequest
      const query = new URL(req.url, "http://node").searchParams
      const to = Number(query.get("to"))
      const limit = Number(query.get("limit") ?? maxPageRows)
      if (!Number.isSafeInteger(to) || to < 1 || !Number.isSafeInteger(limit) || limit < 1) {
        return HttpServerResponse.unsafeJson({ error: "to and limit must be positive integers" }, { status: 400 })
      }
      const rows = yield* node.journalPage(to, Math.min(limit, maxPageRows))
      return HttpServerResponse.unsafeJson({ rows })
    })

    const serveFaults = Effect.gen(function* () {
      const req = yield* HttpServerRequest.HttpServerRequest
      const control = yield* Effect.serviceOption(TransportControl)
      const body = yield* req.text.pipe(Effect.orElseSucceed(() => ""))
      const result = yield* Option.match(control, {
        onNone: () => Effect.fail(new FaultInjectionDisabled()),
        onSome: (c) => applyFault(c, body)
      }).pipe(Effect.either)
      if (result._tag === "Right") return HttpServerResponse.unsafeJson({ ok: true, faults: result.right })
      const status = result.left._tag === "FaultInjectionDisabled" ? 403 : 400
      return HttpServerResponse.unsafeJson({ ok: false, error: result.left.message }, { status })
    })

    return HttpRouter.empty.pipe(
      HttpRouter.post(emitPath, serveEmit),
      HttpRouter.options(emitPath, Effect.succeed(HttpServerResponse.empty({ status: 204, headers: cors }))),
      HttpRouter.get(emitPath, notAllowed),
      HttpRouter.put(emitPath, notAllowed),
      HttpRouter.del(emitPath, notAllowed),
      HttpRouter.patch(emitPath, notAllowed),
      HttpRouter.head(emitPath, notAllowed),
      HttpRouter.post("/debug/faults", serveFaults),
      HttpRouter.get("/status", Effect.map(emit.localStatus, (s) => HttpServerResponse.unsafeJson(s))),
      HttpRouter.get(historyPath, serveHistory),
      HttpRouter.get("/metrics", Effect.map(renderPrometheus, (t) => HttpServerResponse.text(t, { contentType: "text/plain; version=0.0.4" }))),
      HttpRouter.catchAll(() => Effect.succeed(HttpServerResponse.unsafeJson({ error: "not found" }, { status: 404 })))
    )
  })

/**
 * Serves the routes on `server`, listening at host:port until the scope closes. POST Emit, the
 * hot path, skips the router: its body goes straight to the Emit handler (Emit.serve, with no
 * fiber for a job the leader accepts), with no request wrapper, span or response conversion (a
 * third of the leader's CPU per job went there).
 * Every other request goes through the router, which answers Emit identically.
 */
export const serveOn = (server: Http.Server, options: { readonly host: string; readonly port: number; readonly maxBodyBytes: number }) =>
  Effect.gen(function* () {
    const emit = yield* makeEmit
    const routed = yield* NodeHttpServer.makeHandler(yield* routesOf(emit, options.maxBodyBytes))
    const fastEmit = leanEmit(emit, options.maxBodyBytes)
    const onRequest = (req: Http.IncomingMessage, res: Http.ServerResponse) => {
      const url = req.url ?? ""
      const q = url.indexOf("?")
      if (req.method === "POST" && (q < 0 ? url : url.slice(0, q)) === emitPath) fastEmit(req, res)
      else routed(req, res)
    }
    yield* Effect.acquireRelease(
      Effect.async<void, Error>((resume) => {
        const onError = (e: Error) => resume(Effect.fail(e))
        server.once("error", onError)
        server.listen({ host: options.host, port: options.port }, () => {
          server.off("error", onError)
          server.on("request", onRequest)
          resume(Effect.void)
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          server.off("request", onRequest)
          server.close(() => resume(Effect.void))
          server.closeIdleConnections()
        })
    )
  })

const jsonHeaders = (body: string) => ({ ...cors, "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) })

const leanEmit = (emit: Emit, maxBodyBytes: number) =>
  (req: Http.IncomingMessage, res: Http.ServerResponse): void => {
    const reply = (status: number, value: unknown) => {
      if (res.writableEnded || res.destroyed) return
      const body = JSON.stringify(value)
      res.writeHead(status, jsonHeaders(body))
      res.end(body)
    }
    if (Number(req.headers["content-length"] ?? "0") > maxBodyBytes) {
      reply(413, protocolErrorBody(tooLarge(maxBodyBytes)))
      req.resume()
      return
    }
    const chunks: Array<Buffer> = []
    let size = 0
    let refused = false
    req.on("data", (chunk: Buffer) => {
      if (refused) return
      size += chunk.length
      if (size > maxBodyBytes) {
        refused = true
        reply(413, protocolErrorBody(`${tooLarge(maxBodyBytes)} or could not be read`))
        return
      }
      chunks.push(chunk)
    })
    req.on("error", () => res.destroy())
    req.on("end", () => {
      if (refused) return
      const body = chunks.length === 1 ? chunks[0].toString("utf8") : Buffer.concat(chunks).toString("utf8")
      const started = performance.now()
      emit.serve(body, req.headers[forwardedHeader] === "1", (r) => {
        metrics.requestLatency.unsafeUpdate((performance.now() - started) / 1000, [])
        reply(200, r)
      })
    })
  }

class BadFault extends Data.TaggedError("BadFault")<{ readonly message: string }> {}

/**
 * Test only (raft_fault_injection = true): `{"action":"block"|"unblock","peer":"ip:port"}`,
 * `{"action":"blockAll"}`, `{"action":"heal"}`, `{"action":"delay","peer":"ip:port","ms":N}`,
 * `{"action":"diskDelay","ms":N}` (every raft.db write waits N ms first: a slow disk).
 * Jepsen-style tests partition real processes through it.
 */
const applyFault = (c: TransportFaults, body: string): Effect.Effect<unknown, BadFault | FaultInjectionDisabled> => {
  let spec: { action?: unknown; peer?: unknown; ms?: unknown }
  try {
    spec = JSON.parse(body) ?? {}
  } catch {
    return Effect.fail(new BadFault({ message: "body must be JSON" }))
  }
  const peer = typeof spec.peer === "string" ? spec.peer : undefined
  const needPeer = (f: (p: string) => Effect.Effect<void, FaultInjectionDisabled>) =>
    peer === undefined ? Effect.fail(new BadFault({ message: "peer must be ip:port" })) : f(peer)
  const run: Effect.Effect<void, BadFault | FaultInjectionDisabled> = (() => {
    switch (spec.action) {
      case "block":
        return needPeer(c.block)
      case "unblock":
        return needPeer(c.unblock)
      case "blockAll":
        return c.blockAll()
      case "heal":
        return c.heal()
      case "delay":
        return typeof spec.ms === "number" && spec.ms >= 0
          ? needPeer((p) => c.delayMs(p, spec.ms as number))
          : Effect.fail(new BadFault({ message: "ms must be a number >= 0" }))
      case "diskDelay":
        return typeof spec.ms === "number" && spec.ms >= 0
          ? c.diskDelayMs(spec.ms)
          : Effect.fail(new BadFault({ message: "ms must be a number >= 0" }))
      default:
        return Effect.fail(new BadFault({ message: "action must be block, unblock, blockAll, heal, delay or diskDelay" }))
    }
  })()
  return Effect.zipRight(run, Effect.map(c.current(), describeFaults))
}

const describeFaults = (f: Faults) => ({
  blockedAll: f.blockedAll,
  blocked: [...f.blocked],
  delaysMs: Object.fromEntries(f.delaysMs),
  diskDelayMs: f.diskDelayMs
})
