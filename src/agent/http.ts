import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Clock, Effect, Either, Fiber, FiberSet, Layer, Option } from "effect"
import { Jobs } from "./Jobs.js"
import { type AgentReply, decodeRequestText, failed, type RequestEcho, success } from "./protocol.js"

export const emitPath = "/HttpService/Emit"

const noEcho: RequestEcho = { cluster_mgr_request_id: "", task_spec_info: "" }

const reply = (body: AgentReply, status = 200, headers: Record<string, string> = {}) =>
  HttpServerResponse.unsafeJson(body, { status, headers })

const notAllowed = Effect.succeed(reply(failed(noEcho, "only POST is served on this path"), 405, { allow: "POST" }))

/**
 * The agent's routes: POST /HttpService/Emit runs one job and answers when it is done (HTTP 200
 * for every protocol outcome); other methods on it 405, other paths 404, bodies over
 * `maxBodyBytes` 413. A job runs in the agent's scope, not the request's: a client that hangs
 * up does not cut an install in half.
 */
export const makeRouter = (maxBodyBytes: number) =>
  Effect.gen(function* () {
    const jobs = yield* Jobs
    const running = yield* FiberSet.make<unknown, never>()

    const serveEmit = Effect.gen(function* () {
      const req = yield* HttpServerRequest.HttpServerRequest
      const tooLarge = reply(failed(noEcho, `request body exceeds ${maxBodyBytes} bytes`), 413)
      if (Number(req.headers["content-length"] ?? "0") > maxBodyBytes) return tooLarge
      const body = yield* req.text.pipe(HttpServerRequest.withMaxBodySize(Option.some(maxBodyBytes)), Effect.either)
      if (Either.isLeft(body)) return tooLarge
      const decoded = decodeRequestText(body.right)
      if (Either.isLeft(decoded.job)) {
        yield* Effect.logInfo(`refused a request: ${decoded.job.left}`)
        return reply(failed(decoded.echo, decoded.job.left))
      }
      const job = decoded.job.right
      const started = yield* Clock.currentTimeMillis
      const outcome = yield* FiberSet.run(running, Effect.either(jobs.run(job))).pipe(Effect.flatMap(Fiber.join))
      const tookMs = (yield* Clock.currentTimeMillis) - started
      const logged = job._tag === "ping_pong" || job._tag === "list_instances" ? Effect.logDebug : Effect.logInfo
      if (Either.isLeft(outcome)) {
        yield* Effect.logInfo(`${job._tag} (request ${decoded.echo.cluster_mgr_request_id || "-"}) failed in ${tookMs} ms: ${outcome.left.message}`)
        return reply(failed(decoded.echo, outcome.left.message))
      }
      yield* logged(`${job._tag} (request ${decoded.echo.cluster_mgr_request_id || "-"}) done in ${tookMs} ms`)
      return reply(success(decoded.echo, outcome.right))
    })

    return HttpRouter.empty.pipe(
      HttpRouter.post(emitPath, serveEmit),
      HttpRouter.get(emitPath, notAllowed),
      HttpRouter.put(emitPath, notAllowed),
      HttpRouter.del(emitPath, notAllowed),
      HttpRouter.patch(emitPath, notAllowed),
      HttpRouter.head(emitPath, notAllowed),
      HttpRouter.options(emitPath, notAllowed),
      Effect.catchTag("RouteNotFound", () => Effect.succeed(reply(failed(noEcho, "not found: only POST /HttpService/Emit is served"), 404)))
    )
  })

/** Serves the routes on the HttpServer in context (Node's, in the agent). */
export const layer = (maxBodyBytes: number) =>
  Layer.unwrapScoped(Effect.map(makeRouter(maxBodyBytes), (router) => HttpServer.serve(router)))
