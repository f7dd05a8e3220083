// The second half of `npm run build` (after tsc has written dist/ with its declarations):
// bundles each command-line entry with esbuild into one tree-shaken file under dist/bin/, which
// the bins run (see bin/launch.mjs). A node process then loads only the code it can reach, not
// the barrels of effect, @effect/platform and @effect/platform-node (undici, ...).
//
//   src/cli.ts                      -> dist/bin/cluster_mgr.cjs    (CommonJS: see below)
//   src/storage/raftLogWorker.ts    -> dist/bin/raftLogWorker.mjs  (cluster_mgr's writer thread)
//   src/agent/cli.ts                -> dist/bin/node_mgr.mjs       (when that file exists)
//
// cluster_mgr's bundle is CommonJS so that bin/launch.mjs can compile it with V8's code cache
// (vm.Script cachedData; Node 20 has no code cache for ES modules): a node then starts without
// parsing and compiling its 2 MB of code again. Its `import.meta.url` uses read the bundle's own
// file URL; `cluster_mgr audit`, a dynamic import, is bundled in (the cache makes it cheap).
// Beside it, cluster_mgr.cjs.sha256 names its content, which keys the cache (launch.mjs).
//
// Bundles stay in dist/bin/, so that `new URL("../../package.json", import.meta.url)` in bundled
// code still finds the package's own package.json.
// Writes dist/.bundle-meta/<bin>.json (esbuild's metafiles; `node scripts/bundle-why.mjs` reads them)
// and, last, the build stamp dist/.built that the bins compare with the sources.
import { build } from "esbuild"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const exists = (e) => fs.existsSync(`${root}${e.in}`)
/**
 * One group of builds per bin: its entry, then the entries of the worker threads it starts, each
 * with its module format.
 */
const builds = [
  {
    bin: "cluster_mgr",
    entries: [
      { out: "cluster_mgr", in: "src/cli.ts", format: "cjs" },
      // The raft.db writer thread: src/storage/RaftLog.ts starts ./raftLogWorker.mjs beside the bundle.
      { out: "raftLogWorker", in: "src/storage/raftLogWorker.ts", format: "esm" }
    ].filter(exists)
  },
  { bin: "node_mgr", entries: [{ out: "node_mgr", in: "src/agent/cli.ts", format: "esm" }].filter(exists) }
].filter((b) => b.entries.length > 0 && b.entries[0].out === b.bin)

const formats = {
  esm: {
    format: "esm",
    outExtension: { ".js": ".mjs" },
    // Bundled CommonJS dependencies (ws, mime, ...) call require().
    banner: { js: 'import { createRequire as __cmCreateRequire } from "node:module"; const require = __cmCreateRequire(import.meta.url);' }
  },
  cjs: {
    format: "cjs",
    outExtension: { ".js": ".cjs" },
    define: { "import.meta.url": "__cmImportMetaUrl" },
    banner: { js: 'const __cmImportMetaUrl = require("node:url").pathToFileURL(__filename).href;' }
  }
}

// No stamp while dist/bin/ is rewritten: a bin started meanwhile runs the sources through tsx.
fs.rmSync(`${root}dist/.built`, { force: true })
fs.rmSync(`${root}dist/bin`, { recursive: true, force: true })
fs.rmSync(`${root}dist/.bundle-meta`, { recursive: true, force: true })
fs.mkdirSync(`${root}dist/.bundle-meta`, { recursive: true })
// One build per entry: tree shaking keeps only what that command can reach.
for (const { bin, entries } of builds) {
  const metafile = { inputs: {}, outputs: {} }
  for (const entry of entries) {
    const result = await build({
      absWorkingDir: root,
      entryPoints: [{ out: entry.out, in: entry.in }],
      outdir: "dist/bin",
      ...formats[entry.format],
      ...(entry.format === "esm" ? { splitting: true, chunkNames: `${bin}-[name]-[hash]` } : {}),
      bundle: true,
      platform: "node",
      target: "node20",
      // A native addon: loaded from node_modules at run time.
      external: ["better-sqlite3"],
      // Smaller source to keep in memory and parse. Identifiers stay (stack traces read as the
      // sources; the source maps give the lines). No keepNames: its __name() wrapper runs each time
      // a named closure is created, measurable in the request path and the start-up replay, and no
      // code reads function or class names (errors are told apart by _tag).
      minifyWhitespace: true,
      minifySyntax: true,
      sourcemap: "linked",
      metafile: true,
      logLevel: "warning"
    })
    Object.assign(metafile.inputs, result.metafile.inputs)
    Object.assign(metafile.outputs, result.metafile.outputs)
    for (const [file, o] of Object.entries(result.metafile.outputs)) {
      if (!file.endsWith(".map")) console.log(`${file}  ${(o.bytes / 1024).toFixed(0)} KB${o.entryPoint ? `  (${o.entryPoint})` : ""}`)
      if (file.endsWith(".cjs")) {
        const digest = createHash("sha256").update(fs.readFileSync(`${root}${file}`)).digest("hex")
        fs.writeFileSync(`${root}${file}.sha256`, digest)
      }
    }
  }
  fs.writeFileSync(`${root}dist/.bundle-meta/${bin}.json`, JSON.stringify(metafile))
}
fs.writeFileSync(`${root}dist/.built`, "")
