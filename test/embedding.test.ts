import { FetchHttpClient, HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Chunk, Context, Effect, Fiber, Layer, Schema, Stream } from "effect"
import { createServer } from "node:http"
import * as net from "node:net"
import * as path from "node:path"
import { awaitLeader, ClusterMgr, Config, emitPath, makeInProcessGroup, makeRouter, NoSuchJob, RaftNode } from "../src/index.js"
import { removeTmpDirs, tmpDir } from "./audit/workload.js"

afterAll(removeTmpDirs)

const group = (dir = tmpDir("cm-embed-")) =>
  Effect.gen(function* () {
    const g = yield* makeInProcessGroup({ members: ["e1:1", "e2:1", "e3:1"], dataDir: dir })
    return { g, leader: yield* awaitLeader(g.members) }
  })

const transferToSelf = (leader: string) => ({ jobType: "raft_mission", userName: "t", paras: { task_type: "transfer_leader", target_leader: leader } })

describe("ClusterMgr helpers over a RaftNode", () => {
  it.scopedLive("awaitJob returns a job once it is done or failed, on any member that applied it", () =>
    Effect.gen(function* () {
      const { g, leader } = yield* group()
      const done = yield* ClusterMgr.submitJob(leader.node, transferToSelf(leader.id))
      const failed = yield* ClusterMgr.submitJob(leader.node, { jobType: "not_run_here", userName: "t", paras: {} })
      expect((yield* ClusterMgr.awaitJob(leader.node, done)).status).toBe("done")
      expect((yield* ClusterMgr.awaitJob(leader.node, failed)).errorCode).toBe("70007")
      for (const m of g.members) yield* Effect.eventually(ClusterMgr.awaitJob(m.node, done))
    })
  )

  it.scopedLive("awaitJob fails with NoSuchJob for a job this node has not applied", () =>
    Effect.gen(function* () {
      const { leader } = yield* group()
      const error = yield* Effect.flip(ClusterMgr.awaitJob(leader.node, "999"))
      expect(error).toEqual(new NoSuchJob({ jobId: "999" }))
    })
  )

  it.scopedLive("events streams every event a member applies, in order", () =>
    Effect.gen(function* () {
      const { g, leader } = yield* group()
      const follower = g.members.find((m) => m.id !== leader.id)!
      const seen = yield* ClusterMgr.events(follower.node).pipe(
        Stream.filter((e) => e._tag.startsWith("Job")),
        Stream.take(3),
        Stream.runCollect,
        Effect.fork
      )
      yield* Effect.sleep("20 millis")
      yield* ClusterMgr.submitJob(leader.node, transferToSelf(leader.id))
      const tags = Chunk.toArray(yield* Fiber.join(seen)).map((e) => e._tag)
      expect(tags).toEqual(["JobAccepted", "JobStarted", "JobDone"])
    })
  )
})

const freePort = Effect.async<number>((resume) => {
  const server = net.createServer().listen(0, "127.0.0.1", () => {
    const port = (server.address() as net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

describe("ClusterMgr.layer from a Config value", () => {
  it.scopedLive("a one-node group on loopback, its routes mounted on the app's own HTTP server", () =>
    Effect.gen(function* () {
      const [raftPort, httpPort] = [yield* freePort, yield* freePort]
      // A Config value from cnf-style texts, no file involved.
      const config = Schema.decodeUnknownSync(Config)({
        local_ip: "127.0.0.1",
        brpc_raft_port: String(raftPort),
        brpc_http_port: String(httpPort),
        raft_group_member_init_config: `127.0.0.1:${raftPort}:0,`,
        cluster_mgr_tmp_data_path: path.join(tmpDir("cm-layer-"), "data")
      })
      const node = ClusterMgr.layer(config, { serveHttp: false })
      // The app's own route beside cluster_mgr's, at the root: followers forward Emit to the
      // leader's http address + emitPath.
      const appRoutes = HttpRouter.empty.pipe(HttpRouter.get("/app/hello", HttpServerResponse.text("hello")))
      const appServer = Layer.unwrapEffect(
        Effect.map(makeRouter(config.http_max_body_bytes), (routes) => HttpServer.serve(HttpRouter.concat(appRoutes, routes)))
      ).pipe(Layer.provide(NodeHttpServer.layer(createServer, { host: "127.0.0.1", port: httpPort })), Layer.provide(FetchHttpClient.layer))
      const context = yield* Layer.build(appServer.pipe(Layer.provideMerge(node)))
      const raft = Context.get(context, RaftNode)
      yield* raft.leadership.changes.pipe(Stream.filter((l) => l.role === "leader"), Stream.runHead)
      const reply = yield* Effect.promise(() =>
        fetch(`http://127.0.0.1:${httpPort}${emitPath}`, {
          method: "POST",
          body: JSON.stringify({ version: "1.0", job_id: "", job_type: "get_cluster_mgr_status", timestamp: "1", user_name: "t", paras: {} })
        }).then((r) => r.json() as Promise<{ error_code: string; attachment: { role: string } }>)
      )
      expect(reply.error_code).toBe("0")
      expect(reply.attachment.role).toBe("leader")
      expect(yield* Effect.promise(() => fetch(`http://127.0.0.1:${httpPort}/app/hello`).then((r) => r.text()))).toBe("hello")
      const job = yield* ClusterMgr.submitJob(raft, transferToSelf(raft.id))
      expect((yield* ClusterMgr.awaitJob(raft, job)).status).toBe("done")
    })
  )
})
