// Shared by the bins: runs the bundled build (dist/bin/, made by `npm run build`, which `npm ci`
// runs through `prepare`) when it is at least as new as every source file: it starts faster and
// uses less memory (cluster_mgr's, a CommonJS bundle, with V8's code cache: runWithCodeCache). Otherwise it runs the TypeScript sources through tsx, so an edited tree never
// runs stale code and the bins work even without a build.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs"
import Module, { createRequire } from "node:module"
import { dirname } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Script } from "node:vm"

const root = fileURLToPath(new URL("..", import.meta.url))

const newestMtimeMs = (dir) => {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`
    newest = Math.max(newest, entry.isDirectory() ? newestMtimeMs(path) : statSync(path).mtimeMs)
  }
  return newest
}

/** How long a process runs before it saves the code cache, so that what starting compiled is in it. */
const cacheAfterMs = 5000

/**
 * Runs a CommonJS bundle compiled with V8's code cache: on a warm start V8 reads the bytecode
 * instead of parsing and compiling the bundle (an empty node served 0.29-0.46 s after spawn
 * instead of 0.45-0.74 s). The cache is keyed by the bundle's content hash (written beside it by
 * the build), since V8 checks a cache against the source's length only, and by Node's version;
 * V8 refuses one made under other flags (then it is made again). A process without a usable
 * cache saves one after a few seconds of running, through a temporary file and a rename, as
 * several nodes may start at once; where dist/ cannot be written it just runs without one.
 */
const runWithCodeCache = (file) => {
  const source = readFileSync(file, "utf8")
  let hash
  try {
    hash = readFileSync(`${file}.sha256`, "utf8").trim()
  } catch {
    hash = undefined
  }
  const cacheDir = `${dirname(file)}/.v8-cache`
  const cacheFile = hash && `${cacheDir}/${hash}-${process.version}-${process.arch}.bin`
  let cachedData
  try {
    cachedData = cacheFile ? readFileSync(cacheFile) : undefined
  } catch {
    cachedData = undefined
  }
  const script = new Script(Module.wrap(source), { filename: file, cachedData })
  const cjs = new Module(file, undefined)
  cjs.filename = file
  if (cacheFile && (cachedData === undefined || script.cachedDataRejected)) {
    setTimeout(() => {
      try {
        mkdirSync(cacheDir, { recursive: true })
        const temporary = `${cacheFile}.${process.pid}`
        writeFileSync(temporary, script.createCachedData())
        renameSync(temporary, cacheFile)
      } catch {
        // A read-only install: no cache.
      }
    }, cacheAfterMs).unref()
  }
  script.runInThisContext().call(cjs.exports, cjs.exports, createRequire(file), cjs, file, dirname(file))
}

/** `bundle` and `source` are paths from the package root. */
export const launch = async (bundle, source) => {
  const stamp = `${root}dist/.built`
  const fresh = existsSync(stamp) && existsSync(`${root}${bundle}`) && statSync(stamp).mtimeMs >= newestMtimeMs(`${root}src`)
  if (fresh && bundle.endsWith(".cjs")) {
    runWithCodeCache(`${root}${bundle}`)
  } else if (fresh) {
    await import(pathToFileURL(`${root}${bundle}`).href)
  } else {
    const { register } = await import("tsx/esm/api")
    register()
    await import(pathToFileURL(`${root}${source}`).href)
  }
}
