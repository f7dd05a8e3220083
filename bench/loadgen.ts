/**
 * A closed-loop HTTP load generator, the same for every system the emit bench compares:
 * N clients, each sending its next request as soon as the previous one is answered, over
 * keep-alive connections (node:http Agent), recording the latency of every successful request.
 *
 * The system under test only supplies `send`: one request, resolved with the address that
 * accepted it, or undefined when it was not accepted (a thrown error counts the same). How
 * requests are routed (and re-routed after a failure) is the system's business, so that one
 * loop serves both steady-state throughput and failover runs.
 */
import * as http from "node:http"

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// ------------------------------------------------------------------------------ HTTP client

export interface Reply {
  readonly status: number
  readonly body: string
}

/** One keep-alive agent per system under test; clients run one request at a time each. */
export const keepAliveAgent = (): http.Agent => new http.Agent({ keepAlive: true, maxSockets: 1024, maxFreeSockets: 1024 })

/**
 * One HTTP request to `address` ("host:port"). Rejects on a connection error or after
 * `timeoutMs` without a complete reply (the socket is destroyed then).
 */
export const request = (
  agent: http.Agent,
  address: string,
  method: "GET" | "POST",
  path: string,
  body: string | undefined,
  timeoutMs: number,
  extraHeaders: Readonly<Record<string, string>> = {}
): Promise<Reply> =>
  new Promise<Reply>((resolve, reject) => {
    const colon = address.lastIndexOf(":")
    const headers: Record<string, string | number> = { ...extraHeaders }
    if (body !== undefined) {
      headers["content-type"] = "application/json"
      headers["content-length"] = Buffer.byteLength(body)
    }
    const req = http.request(
      { agent, host: address.slice(0, colon), port: Number(address.slice(colon + 1)), method, path, headers },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () => {
          clearTimeout(timer)
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") })
        })
        res.on("error", (e) => {
          clearTimeout(timer)
          reject(e)
        })
      }
    )
    const timer = setTimeout(() => req.destroy(new Error(`no reply from ${address}${path} within ${timeoutMs} ms`)), timeoutMs)
    req.on("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    req.end(body)
  })

// ----------------------------------------------------------------------------- load loop

/** One request of client number `client`: the address that accepted it, or undefined. */
export type Send = (client: number) => Promise<string | undefined>

export interface Success {
  /** performance.now() when the request was sent and when its reply arrived. */
  readonly sentAt: number
  readonly doneAt: number
  /** The address that accepted it. */
  readonly by: string
}

export interface LoadResult {
  readonly concurrency: number
  readonly seconds: number
  readonly ok: number
  readonly failed: number
  /** Accepted requests per second. */
  readonly rps: number
  /** Latency of accepted requests, ms. */
  readonly p50: number
  readonly p99: number
  readonly max: number
}

export interface LoadOptions {
  readonly concurrency: number
  readonly send: Send
  /** Pause of a client after a failed request, so that a dead address is not spun on. */
  readonly failurePauseMs?: number
}

export interface Load {
  /** Stops the clients (each finishes its request in flight) and summarises the run. */
  readonly stop: () => Promise<LoadResult>
  /**
   * The first success (from now on) that matches, or undefined after `timeoutMs`. Successes
   * are also matched against those already recorded since `since` (performance.now()).
   */
  readonly firstSuccess: (since: number, match: (s: Success) => boolean, timeoutMs: number) => Promise<Success | undefined>
  /** Restarts the counters: what `stop` reports is from the last reset (or the start) on. */
  readonly reset: () => void
  /** The longest time in [from, to] (performance.now()) without a reply accepted, ms. */
  readonly longestGap: (from: number, to: number) => number
}

export const percentile = (sorted: ArrayLike<number>, p: number): number => {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

/** Starts `concurrency` clients in a closed loop; they run until `stop`. */
export const startLoad = (options: LoadOptions): Load => {
  const pause = options.failurePauseMs ?? 5
  let running = true
  let since = performance.now()
  let latencies: Array<number> = []
  let failed = 0
  /** Recent successes, for firstSuccess; trimmed to the last few seconds. */
  let recent: Array<Success> = []
  const waiters = new Set<(s: Success) => boolean>()
  /** When each accepted reply arrived, in order (for longestGap). */
  const doneTimes: Array<number> = []

  const record = (s: Success): void => {
    latencies.push(s.doneAt - s.sentAt)
    doneTimes.push(s.doneAt)
    recent.push(s)
    if (recent.length > 4096) recent = recent.filter((r) => r.doneAt > s.doneAt - 5000)
    for (const w of waiters) if (w(s)) waiters.delete(w)
  }

  const client = async (n: number): Promise<void> => {
    while (running) {
      const sentAt = performance.now()
      let by: string | undefined
      try {
        by = await options.send(n)
      } catch {
        by = undefined
      }
      if (by !== undefined) {
        record({ sentAt, doneAt: performance.now(), by })
      } else {
        failed++
        if (running) await sleep(pause)
      }
    }
  }
  const clients = Array.from({ length: options.concurrency }, (_, n) => client(n))

  return {
    reset: () => {
      since = performance.now()
      latencies = []
      failed = 0
    },
    longestGap: (from, to) => {
      let gap = 0
      let last = from
      for (const t of doneTimes) {
        if (t <= from) continue
        if (t > to) break
        gap = Math.max(gap, t - last)
        last = t
      }
      return Math.max(gap, to - last)
    },
    firstSuccess: (from, match, timeoutMs) =>
      new Promise((resolve) => {
        const found = recent.find((s) => s.sentAt >= from && match(s))
        if (found !== undefined) return resolve(found)
        const timer = setTimeout(() => {
          waiters.delete(waiter)
          resolve(undefined)
        }, timeoutMs)
        const waiter = (s: Success): boolean => {
          if (s.sentAt < from || !match(s)) return false
          clearTimeout(timer)
          resolve(s)
          return true
        }
        waiters.add(waiter)
      }),
    stop: async () => {
      running = false
      const seconds = (performance.now() - since) / 1000
      const sample = Float64Array.from(latencies).sort()
      const ok = sample.length
      const result: LoadResult = {
        concurrency: options.concurrency,
        seconds,
        ok,
        failed,
        rps: ok / seconds,
        p50: percentile(sample, 50),
        p99: percentile(sample, 99),
        max: ok > 0 ? sample[ok - 1] : NaN
      }
      await Promise.race([Promise.all(clients), sleep(10_000)])
      return result
    }
  }
}

/** Runs `concurrency` clients for `warmupMs` (not counted), then `durationMs` (counted). */
export const runLoad = async (
  options: LoadOptions & { readonly durationMs: number; readonly warmupMs: number },
  during?: (elapsedMs: number) => void
): Promise<LoadResult> => {
  const load = startLoad(options)
  await sleep(options.warmupMs)
  load.reset()
  const start = performance.now()
  while (performance.now() - start < options.durationMs) {
    await sleep(Math.min(200, options.durationMs - (performance.now() - start)))
    during?.(performance.now() - start)
  }
  return load.stop()
}
