// The second half of `npm run build` (after tsc has written dist/ with its declarations):
// bundles each command-line entry with esbuild into one tree-shaken ES module under dist/bin/,
// which the bins run (see bin/cluster_mgr.mjs). A node process then loads only the code it can
// reach, not the barrels of effect, @effect/platform and @effect/platform-node (undici, ws, ...);
// `cluster_mgr audit` is split into its own chunk, loaded only for that subcommand.
//
//   src/cli.ts                      -> dist/bin/cluster_mgr.mjs
//   src/storage/raftLogWorker.ts    -> dist/bin/raftLogWorker.mjs  (cluster_mgr's writer thread)
//   src/agent/cli.ts                -> dist/bin/node_mgr.mjs       (when that file exists)
//
// Chunks stay beside the entries (dist/bin/), so that `new URL("../../package.json",
// import.meta.url)` in bundled code still finds the package's own package.json.
// Writes dist/.bundle-meta/<bin>.json (esbuild's metafiles; `node scripts/bundle-why.mjs` reads them)
// and, last, the build stamp dist/.built that the bins compare with the sources.
import { build } from "esbuild"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const exists = (e) => fs.existsSync(`${root}${e.in}`)
/** One build per bin: its entry, plus the entries of the worker threads it starts. */
const builds = [
  {
    bin: "cluster_mgr",
    entries: [
      { out: "cluster_mgr", in: "src/cli.ts" },
      // The raft.db writer thread: src/storage/RaftLog.ts starts ./raftLogWorker.mjs beside itself.
      { out: "raftLogWorker", in: "src/storage/raftLogWorker.ts" }
    ].filter(exists)
  },
  { bin: "node_mgr", entries: [{ out: "node_mgr", in: "src/agent/cli.ts" }].filter(exists) }
].filter((b) => b.entries.length > 0 && b.entries[0].out === b.bin)

// No stamp while dist/bin/ is rewritten: a bin started meanwhile runs the sources through tsx.
fs.rmSync(`${root}dist/.built`, { force: true })
fs.rmSync(`${root}dist/bin`, { recursive: true, force: true })
fs.rmSync(`${root}dist/.bundle-meta`, { recursive: true, force: true })
fs.mkdirSync(`${root}dist/.bundle-meta`, { recursive: true })
/**
 * Modules bundled in place of others for one importer, each file under scripts/substitutes/
 * saying why: code that a bin cannot run but would load at every start. `bins` limits one to
 * those bins (all when absent).
 */
const substitutes = [
  { module: /^ws$/, importer: /[\\/]@effect[\\/]platform-node[\\/]/, file: "ws-on-demand.mjs" },
  { module: /^fast-check$/, importer: /[\\/]effect[\\/]dist[\\/]esm[\\/]FastCheck\.js$/, file: "fast-check-absent.mjs" },
  {
    module: /[\\/]NodeContext\.js$/,
    importer: /[\\/]@effect[\\/]platform-node[\\/]dist[\\/]esm[\\/]internal[\\/]httpServer\.js$/,
    file: "node-context-absent.mjs",
    bins: ["cluster_mgr"]
  }
]
const substitute = (bin) => ({
  name: "substitutes",
  setup(b) {
    for (const s of substitutes.filter((s) => s.bins === undefined || s.bins.includes(bin))) {
      const file = `${root}scripts/substitutes/${s.file}`
      let original
      b.onResolve({ filter: s.module }, (args) => {
        if (s.importer.test(args.importer)) {
          original = path.dirname(args.importer)
          return { path: file }
        }
        // A substitute that loads the real module on demand resolves it as the importer would.
        if (args.importer === file && original !== undefined) return b.resolve(args.path, { resolveDir: original, kind: args.kind })
        return undefined
      })
    }
  }
})
// One build per bin: tree shaking keeps only what that command can reach.
for (const { bin, entries } of builds) {
  const result = await build({
    absWorkingDir: root,
    entryPoints: entries,
    outdir: "dist/bin",
    outExtension: { ".js": ".mjs" },
    chunkNames: `${bin}-[name]-[hash]`,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    // A native addon: loaded from node_modules at run time.
    external: ["better-sqlite3"],
    // Bundled CommonJS dependencies (ws, mime, ...) call require().
    banner: { js: 'import { createRequire as __cmCreateRequire } from "node:module"; const require = __cmCreateRequire(import.meta.url);' },
    // Smaller source to keep in memory and parse. Identifiers stay (stack traces read as the
    // sources; the source maps give the lines). No keepNames: its __name() wrapper runs each time
    // a named closure is created, measurable in the request path and the start-up replay, and no
    // code reads function or class names (errors are told apart by _tag).
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: "linked",
    metafile: true,
    plugins: [substitute(bin)],
    logLevel: "warning"
  })
  fs.writeFileSync(`${root}dist/.bundle-meta/${bin}.json`, JSON.stringify(result.metafile))
  for (const [file, o] of Object.entries(result.metafile.outputs)) {
    if (!file.endsWith(".map")) console.log(`${file}  ${(o.bytes / 1024).toFixed(0)} KB${o.entryPoint ? `  (${o.entryPoint})` : ""}`)
  }
}
fs.writeFileSync(`${root}dist/.built`, "")
