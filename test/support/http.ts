import * as http from "node:http"

export interface HttpReply {
  readonly httpStatus: number
  readonly text: string
  /** The body parsed as JSON; undefined when it is not JSON. */
  readonly json: any
}

/** Klustron's one endpoint, served by cluster_mgr and node_mgr alike. */
export const emitPath = "/HttpService/Emit"

/**
 * One HTTP request to "ip:port" without keep-alive (the processes under test get killed),
 * bounded by `timeoutMs`; a body is sent as JSON.
 */
export const httpRequest = (method: string, address: string, urlPath: string, body?: string | Buffer, timeoutMs = 15_000): Promise<HttpReply> =>
  new Promise((resolve, reject) => {
    const at = address.lastIndexOf(":")
    const headers: Record<string, string | number> = {}
    if (body !== undefined) {
      headers["content-type"] = "application/json"
      headers["content-length"] = Buffer.byteLength(body)
    }
    const req = http.request({ host: address.slice(0, at), port: Number(address.slice(at + 1)), method, path: urlPath, agent: false, headers }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("error", reject)
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8")
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          json = undefined
        }
        resolve({ httpStatus: res.statusCode ?? 0, text, json })
      })
    })
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} http://${address}${urlPath}: no answer within ${timeoutMs} ms`)))
    req.on("error", reject)
    if (body !== undefined) req.write(body)
    req.end()
  })
