import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Layer, Metric, Option } from "effect"
import { metrics } from "../actors/metrics.js"
import { forwardedHeader, makeEmit } from "./Emit.js"
import { renderPrometheus } from "./prometheus.js"

export const emitPath = "/HttpService/Emit"

/** Klustron's web console calls Emit from a browser, so it answers with permissive CORS. */
const cors = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "POST, GET, OPTIONS",
  "access-control-allow-headers": "content-type"
}

const protocolError = (status: number, info: string, extra: Record<string, string> = {}) =>
  HttpServerResponse.unsafeJson(
    { attachment: null, error_code: "70001", error_info: info, status: "failed", version: "1.0" },
    { status, headers: { ...cors, ...extra } }
  )

const notAllowed = Effect.succeed(protocolError(405, "only POST is served on this path", { allow: "POST, OPTIONS" }))

/**
 * The node's HTTP routes: Emit (POST; other methods 405), GET /status and GET /metrics; any
 * other path is 404. Bodies over `maxBodyBytes` get 413 before they are read in full.
 */
export const makeRouter = (maxBodyBytes: number) =>
  Effect.gen(function* () {
    const emit = yield* makeEmit

    const serveEmit = Effect.gen(function* () {
      const req = yield* HttpServerRequest.HttpServerRequest
      const length = Number(req.headers["content-length"] ?? "0")
      if (length > maxBodyBytes) return protocolError(413, `request body exceeds ${maxBodyBytes} bytes`)
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

    return HttpRouter.empty.pipe(
      HttpRouter.post(emitPath, serveEmit),
      HttpRouter.options(emitPath, Effect.succeed(HttpServerResponse.empty({ status: 204, headers: cors }))),
      HttpRouter.get(emitPath, notAllowed),
      HttpRouter.put(emitPath, notAllowed),
      HttpRouter.del(emitPath, notAllowed),
      HttpRouter.patch(emitPath, notAllowed),
      HttpRouter.head(emitPath, notAllowed),
      HttpRouter.get("/status", Effect.map(emit.localStatus, (s) => HttpServerResponse.unsafeJson(s))),
      HttpRouter.get("/metrics", Effect.map(renderPrometheus, (t) => HttpServerResponse.text(t, { contentType: "text/plain; version=0.0.4" }))),
      HttpRouter.catchAll(() => Effect.succeed(HttpServerResponse.unsafeJson({ error: "not found" }, { status: 404 })))
    )
  })

/** Serves the routes on the HttpServer in context (Node's, in production). */
export const layer = (maxBodyBytes: number) =>
  Layer.unwrapScoped(Effect.map(makeRouter(maxBodyBytes), (router) => HttpServer.serve(router)))
