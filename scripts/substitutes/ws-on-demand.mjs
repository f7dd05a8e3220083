// Bundled in place of `ws` where @effect/platform-node imports it (scripts/bundle.mjs). Its HTTP
// server module imports ws at its top level for WebSocket upgrades, which a cluster_mgr node never
// serves, and ws loads https, tls, zlib and querystring with it: about 2 MB of RSS and 5-10 ms of
// every start. Here the real ws (still in the bundle) is loaded when a server is first made.
// esbuild turns this require() into a call of ws's bundled module at this point, not at start.
const load = () => require("ws")

export class WebSocketServer {
  constructor(...args) {
    return new (load().WebSocketServer)(...args)
  }
}

export class WebSocket {
  constructor(...args) {
    return new (load().WebSocket)(...args)
  }
}
