// `npm run build:why [-- bin [pattern]]`: what a bundled bin loads, from the esbuild metafiles
// that `npm run build` writes to dist/.bundle-meta/. Without a pattern: the bytes per package of
// the code the bin loads at start (its entry and the chunks that entry imports statically; chunks
// behind a dynamic import(), such as `audit`, and worker-thread entries are listed apart). With a pattern (a regular
// expression over input paths): the chain of static imports that pulls the first matching input
// into the bin.
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

const dir = fileURLToPath(new URL("../dist/.bundle-meta/", import.meta.url))
const [bin = "cluster_mgr", pattern] = process.argv.slice(2)
const file = `${dir}${bin}.json`
if (!fs.existsSync(file)) {
  console.error(`no ${file}: run \`npm run build\` first (bins: ${fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => f.replace(/\.json$/, "")).join(", ") : "none"})`)
  process.exit(2)
}
const meta = JSON.parse(fs.readFileSync(file, "utf8"))
const kb = (n) => `${(n / 1024).toFixed(0)} KB`
const packageOf = (input) => {
  const parts = input.split("/")
  const at = parts.lastIndexOf("node_modules")
  if (at < 0) return parts[0]
  return parts[at + 1].startsWith("@") ? `${parts[at + 1]}/${parts[at + 2]}` : parts[at + 1]
}

if (pattern !== undefined) {
  const re = new RegExp(pattern)
  const entry = meta.outputs[`dist/bin/${bin}.mjs`].entryPoint
  const from = new Map([[entry, undefined]])
  const queue = [entry]
  while (queue.length > 0) {
    const input = queue.shift()
    if (input !== entry && re.test(input)) {
      const chain = []
      for (let at = input; at !== undefined; at = from.get(at)) chain.unshift(at)
      console.log(chain.join("\n  -> "))
      process.exit(0)
    }
    for (const i of meta.inputs[input]?.imports ?? []) {
      if (i.external || i.kind === "dynamic-import" || from.has(i.path)) continue
      from.set(i.path, input)
      queue.push(i.path)
    }
  }
  console.log(`no input matching ${pattern} is imported statically by ${entry}`)
  process.exit(1)
}

const outputs = Object.entries(meta.outputs).filter(([f]) => !f.endsWith(".map"))
const atStart = new Set()
const queue = [`dist/bin/${bin}.mjs`]
while (queue.length > 0) {
  const f = queue.shift()
  if (atStart.has(f)) continue
  atStart.add(f)
  for (const i of meta.outputs[f].imports) if (i.kind === "import-statement" && meta.outputs[i.path]) queue.push(i.path)
}
const byPackage = new Map()
let total = 0
for (const f of atStart) {
  for (const [input, { bytesInOutput }] of Object.entries(meta.outputs[f].inputs)) {
    byPackage.set(packageOf(input), (byPackage.get(packageOf(input)) ?? 0) + bytesInOutput)
    total += bytesInOutput
  }
}
console.log(`${bin}: loaded at start: ${[...atStart].join(", ")} (${kb(total)} of code)`)
for (const [p, n] of [...byPackage].sort((a, b) => b[1] - a[1])) console.log(`  ${kb(n).padStart(7)}  ${p}`)
const later = outputs.filter(([f]) => !atStart.has(f))
for (const [f, o] of later) console.log(`not loaded at start: ${f} (${kb(o.bytes)}${o.entryPoint ? `, ${o.entryPoint}` : ""})`)
