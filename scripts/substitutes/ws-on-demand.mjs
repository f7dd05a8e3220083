// Bundled in place of `ws` where @effect/platform-node imports it (scripts/bundle.mjs). Its HTTP
// server module imports ws at its top level for WebSocket upgrades, which a cluster_mgr node never
// serves, and ws loads https, tls, zlib and querystring with it: with ws's own code, about 4 MB of
// an idle node's heap. Here the real ws is required when a WebSocket server is first made
// (node_mgr's HTTP server makes one lazily, on an upgrade); esbuild turns this require() into a
// call of ws's bundled module at this point, not at start. cluster_mgr never makes one, so its
// bundle holds no ws at all.
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
