// Shared by the bins: runs the bundled build (dist/bin/, made by `npm run build`, which `npm ci`
// runs through `prepare`) when it is at least as new as every source file: it starts faster and
// uses less memory. Otherwise it runs the TypeScript sources through tsx, so an edited tree never
// runs stale code and the bins work even without a build.
import { existsSync, readdirSync, statSync } from "node:fs"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

const newestMtimeMs = (dir) => {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`
    newest = Math.max(newest, entry.isDirectory() ? newestMtimeMs(path) : statSync(path).mtimeMs)
  }
  return newest
}

/**
 * Whether the bins run `bundle` (a path from the package root) rather than the sources: the
 * build stamp (dist/.built, written last by the build) exists, and so does the bundle, and the
 * stamp is at least as new as every file under src/.
 */
export const bundleIsFresh = (bundle) => {
  const stamp = `${root}dist/.built`
  return existsSync(stamp) && existsSync(`${root}${bundle}`) && statSync(stamp).mtimeMs >= newestMtimeMs(`${root}src`)
}

/** `bundle` and `source` are paths from the package root. */
export const launch = async (bundle, source) => {
  if (bundleIsFresh(bundle)) {
    await import(pathToFileURL(`${root}${bundle}`).href)
  } else {
    const { register } = await import("tsx/esm/api")
    register()
    await import(pathToFileURL(`${root}${source}`).href)
  }
}
