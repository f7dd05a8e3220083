// Bundled, in cluster_mgr's bin only, in place of @effect/platform-node's NodeContext where its
// HTTP server module imports it (scripts/bundle.mjs). That module needs NodeContext only for
// its layer constructors (`layer`, `layerContext`), which the node does not use: it serves with
// `makeHandler`. The import alone put NodeContext's command executor, terminal (readline), file
// system and worker layers into the chunk every start loads (28 KB, plus node:readline);
// `cluster_mgr audit`, which provides NodeContext.layer, still gets the real module in its chunk.
// node_mgr serves with NodeHttpServer.layer, which needs the real one: it is not substituted there.
export {}
