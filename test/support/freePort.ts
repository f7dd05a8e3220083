import * as net from "node:net"

const handedOut = new Set<number>()

/** A port nobody listens on now on 127.0.0.1 (bind port 0, read it, close); never the same twice per process. */
export const freePort = async (): Promise<number> => {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer()
      server.unref()
      server.once("error", reject)
      server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
        const address = server.address()
        const p = typeof address === "object" && address !== null ? address.port : 0
        server.close(() => resolve(p))
      })
    })
    if (port > 0 && !handedOut.has(port)) {
      handedOut.add(port)
      return port
    }
  }
}
