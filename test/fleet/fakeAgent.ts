import * as http from "node:http"
import type * as net from "node:net"

/**
 * A scriptable stand-in for a node_mgr agent (the real one is tested in test/agent): it speaks
 * the node_mgr protocol on a real socket, records every request, and can be made silent.
 */
export interface FakeInstance {
  kind: "storage" | "computer"
  port: number
  status: string
  pid: number
  stopped_on_purpose: boolean
}

export interface FakeReport {
  seq: number
  at: number
  kind: string
  port: number
  event: string
  detail: string
}

export class FakeAgent {
  readonly requests: Array<{ job_type: string; paras: Record<string, string>; id: string }> = []
  instances: Array<FakeInstance> = []
  reports: Array<FakeReport> = []
  /** When false, connections are destroyed without an answer (a dead agent). */
  alive = true
  /** How long control_instance takes. */
  controlDelayMs = 0
  private nextPid = 1000
  private readonly busy = new Map<number, Promise<void>>()
  private constructor(readonly server: http.Server, readonly address: string, readonly port: number) {}

  static async start(host = "127.0.0.1"): Promise<FakeAgent> {
    const server = http.createServer()
    await new Promise<void>((resolve) => server.listen(0, host, resolve))
    const port = (server.address() as net.AddressInfo).port
    const agent = new FakeAgent(server, `${host}:${port}`, port)
    server.on("request", (req, res) => agent.serve(req, res))
    return agent
  }

  addInstance(kind: "storage" | "computer", port: number): FakeInstance {
    const i = { kind, port, status: "running", pid: this.nextPid++, stopped_on_purpose: false }
    this.instances.push(i)
    return i
  }

  report(event: string, port: number, detail = ""): void {
    const seq = (this.reports.at(-1)?.seq ?? 0) + 1
    this.reports.push({ seq, at: Date.now(), kind: "storage", port, event, detail })
  }

  count(jobType: string): number {
    return this.requests.filter((r) => r.job_type === jobType).length
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (!this.alive) {
      req.socket.destroy()
      return
    }
    let body = ""
    req.on("data", (c) => (body += c))
    req.on("end", () => {
      const r = JSON.parse(body) as { job_type: string; paras: Record<string, string>; cluster_mgr_request_id: string }
      this.requests.push({ job_type: r.job_type, paras: r.paras, id: r.cluster_mgr_request_id })
      const answer = (status: "success" | "failed", info: unknown) =>
        res.end(JSON.stringify({ cluster_mgr_request_id: r.cluster_mgr_request_id, info, status, task_spec_info: r.job_type }))
      switch (r.job_type) {
        case "ping_pong": {
          const ack = Number(r.paras.ack_report_seq ?? 0)
          this.reports = this.reports.filter((x) => x.seq > ack)
          return answer("success", { node_mgr: "fake", instances: this.instances, reports: this.reports })
        }
        case "list_instances":
          return answer("success", { instances: this.instances })
        case "control_instance": {
          const i = this.instances.find((x) => x.port === Number(r.paras.port))
          if (!i) return answer("failed", `no instance on port ${r.paras.port}`)
          // As the real agent: one operation at a time per instance, its status shown meanwhile.
          const previous = this.busy.get(i.port) ?? Promise.resolve()
          const next = previous.then(
            () =>
              new Promise<void>((resolve) => {
                if (r.paras.control !== "start" || i.status !== "running") i.status = r.paras.control === "stop" ? "stopping" : "starting"
                setTimeout(() => {
                  if (r.paras.control === "stop") Object.assign(i, { status: "stopped", stopped_on_purpose: true })
                  else if (r.paras.control === "restart" || i.status !== "running") {
                    Object.assign(i, { status: "running", stopped_on_purpose: false, pid: this.nextPid++ })
                  }
                  answer("success", i)
                  resolve()
                }, this.controlDelayMs)
              })
          )
          this.busy.set(i.port, next)
          return
        }
        default:
          return answer("failed", `unknown job_type ${r.job_type}`)
      }
    })
  }
}
