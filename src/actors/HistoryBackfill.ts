import * as HttpClient from "@effect/platform/HttpClient"
import { Duration, Effect, Layer, Metric, Schema } from "effect"
import { decodeEvent, genesisHash, type HistoryNeed, type Journal, JournalRow, rowHash } from "../storage/Journal.js"
import type { RaftStatus } from "../domain/raft/ready.js"
import type { ClusterState } from "../domain/state.js"
import { metrics } from "./metrics.js"
import { RaftNode, type RaftNodeApi } from "./RaftNode.js"
import { Transport } from "./Transport.js"

/** Where a node serves its journal a page at a time, newest first (GET ?to=SEQ&limit=N). */
export const historyPath = "/journal/page"
export const maxPageRows = 1000

/**
 * Why `rows` (newest first) are not the chain just below `need`, or undefined when they are:
 * consecutive seqs from `need.toSeq` down, none at or below `need.floor` (rows this node holds),
 * each row hashing to its stored hash, each hash the prev_hash of the row above, the first row
 * the anchor, and seq 1 linking to the genesis hash. The anchor is the base's hash, which came
 * through Raft, or a row that chains up to it, so a page that passes is the leader's history,
 * whoever served it.
 */
export const checkPage = (rows: ReadonlyArray<JournalRow>, need: HistoryNeed): string | undefined => {
  let seq = need.toSeq
  let hash = need.anchor
  for (const r of rows) {
    if (r.seq !== seq) return `expected seq ${seq}, got ${r.seq}`
    if (seq <= need.floor) return `seq ${seq} is one this node holds`
    if (r.hash !== hash) return `seq ${seq}: its hash does not link to the row above`
    if (rowHash(r.prevHash, r) !== r.hash) return `seq ${seq}: the row does not hash to its stored hash`
    if (seq === 1 && r.prevHash !== genesisHash) return "seq 1 does not link to the genesis hash"
    seq--
    hash = r.prevHash
  }
  return undefined
}

const PageRows = Schema.Struct({ rows: Schema.Array(JournalRow) })

/** How long to wait before asking again: soon while pages come, slowly when none can. */
const busyPause = Duration.millis(50)
const idlePause = Duration.seconds(2)

/**
 * Remembers the HTTP address of every leader this node has seen in its state (each election's
 * LeaderElected event names it), so that a node that itself leads still knows whom to ask.
 */
export const noteLeader = (seen: Map<string, string>, self: string, state: ClusterState): void => {
  if (state.leader !== null && state.leader !== self && state.leaderHttp) seen.set(state.leader, state.leaderHttp)
}

/**
 * Leaders on this node's record, as (raft id, HTTP address): those of the newest LeaderElected
 * events in its journal, and the one its base's image names (the state when the snapshot it
 * joined from was taken). `noteLeader` sees only the leader of the moment, and `seen` starts empty
 * after a restart: a node that restarts and takes the lead before its copy is done would
 * otherwise know no one to ask, and its history would stay incomplete for good.
 */
export const leadersOnRecord = (journal: Journal): Array<readonly [string, string]> => {
  const found: Array<readonly [string, string]> = []
  for (const row of journal.newestOfType("LeaderElected", 16)) {
    const event = decodeEvent(row.event)
    if (event._tag === "LeaderElected") found.push([event.leader, event.http])
  }
  const image = journal.journalBase().state
  if (image !== null) {
    // Our own snapshot's image, checked when it was installed: only its leader is read here.
    const state = (JSON.parse(image) as { state?: { leader?: unknown; leaderHttp?: unknown } }).state
    if (typeof state?.leader === "string" && typeof state.leaderHttp === "string") found.push([state.leader, state.leaderHttp])
  }
  return found
}

/**
 * The journal head at a copier's last look at `leadersOnRecord`: it looks again only once events
 * were added, not on every idle pass.
 */
export interface RecordLookup {
  checkedHead: number | undefined
}

/**
 * The addresses to ask, in order: the leader this node follows, then every other member whose
 * address it has seen lead, then those the members announced when they connected (each still a
 * voter or learner). A leader that joined by snapshot and took over before its copy was done thus
 * asks the members that led before it, and the others.
 */
export const sourcesFor = (
  self: string,
  status: RaftStatus,
  state: ClusterState,
  seen: ReadonlyMap<string, string>,
  announced: ReadonlyMap<string, string> = new Map()
): Array<string> => {
  // The members as the Raft core knows them: the state's voters come only from membership
  // changes (MembershipChanged), so a group that never changed its members has none there, and
  // a leader that joined by snapshot found no one to ask (chaos seed 1327504).
  const members = new Set([...status.voters, ...status.outgoing, ...status.learners])
  const following = status.role !== "leader" && status.leader !== null && state.leader === status.leader && state.leaderHttp
  const first = following ? [state.leaderHttp!] : []
  const others = [...seen, ...announced].filter(([id]) => id !== self && members.has(id)).map(([, http]) => http)
  return [...new Set([...first, ...others])]
}

/** Asks `http` for the page below `need` and stores it if it is the chain; whether it did. */
const fetchPage = (client: HttpClient.HttpClient, journal: Journal, http: string, need: HistoryNeed): Effect.Effect<boolean> =>
  Effect.gen(function* () {
    const limit = Math.min(maxPageRows, need.toSeq - need.floor)
    const page = yield* client.get(`http://${http}${historyPath}?to=${need.toSeq}&limit=${limit}`).pipe(
      Effect.flatMap((res) => res.json),
      Effect.flatMap(Schema.decodeUnknown(PageRows)),
      Effect.scoped,
      Effect.timeout(Duration.seconds(10))
    )
    if (page.rows.length === 0) return false // it lacks them (pruned, or its own history is short)
    const wrong = checkPage(page.rows, need)
    if (wrong !== undefined) {
      yield* Effect.logWarning(`history from ${http} refused: ${wrong}`)
      return false
    }
    // The journal may have changed while the page came (a snapshot installed): then it is stale.
    const added = yield* Effect.try(() => journal.addHistory(page.rows, need))
    if (added === "joined") yield* Effect.logInfo(`history: the copied gap reaches this node's own rows at seq ${need.floor}`)
    if (added === "own rows dropped") {
      yield* Effect.logError(`history: this node's own rows through seq ${need.floor} are not the chain the snapshot continues; dropped, copying them from the members`)
    }
    if (added === "stale") yield* Effect.logDebug(`history: a page from ${http} below seq ${need.toSeq} came after the journal moved on; dropped`)
    return true
  }).pipe(Effect.catchAll((e) => Effect.logDebug(`history backfill: no page from ${http}`, e).pipe(Effect.as(false))))

/**
 * Fills the history of a node that joined by snapshot with the events before its base, a page
 * at a time, newest first, from the leader it follows or else a member it saw lead; each page is
 * checked against the chain before it is stored. Then the node answers get_status for any job,
 * as the others do (StateMachine.job).
 */
export const copyOnce = (
  node: RaftNodeApi,
  journal: Journal,
  client: HttpClient.HttpClient,
  seen: Map<string, string>,
  record: RecordLookup = { checkedHead: undefined },
  announced: () => ReadonlyMap<string, string> = () => new Map()
) =>
  Effect.gen(function* () {
    const state = yield* node.localState
    noteLeader(seen, node.id, state)
    const need = yield* Effect.try(() => journal.historyNeed())
    yield* Metric.set(metrics.historyMissing, need?.toSeq ?? 0)
    if (need === undefined) return idlePause
    const status = yield* node.status
    let sources = sourcesFor(node.id, status, state, seen, announced())
    const head = journal.journalHead().seq
    if (sources.length === 0 && record.checkedHead !== head) {
      record.checkedHead = head
      for (const [leader, http] of yield* Effect.try(() => leadersOnRecord(journal))) {
        if (leader !== node.id && !seen.has(leader)) seen.set(leader, http)
      }
      sources = sourcesFor(node.id, status, state, seen, announced())
    }
    for (const http of sources) {
      if (yield* fetchPage(client, journal, http, need)) return busyPause
    }
    return idlePause
  }).pipe(Effect.catchAll((e) => Effect.logDebug("history backfill: no page this time", e).pipe(Effect.as(idlePause))))

export const layer = (journal: Journal): Layer.Layer<never, never, RaftNode | Transport | HttpClient.HttpClient> =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const node = yield* RaftNode
      const transport = yield* Transport
      const client = yield* HttpClient.HttpClient
      const seen = new Map<string, string>()
      const record: RecordLookup = { checkedHead: undefined }
      const repair = journal.historyRepair
      if (repair !== undefined) {
        yield* Effect.logWarning(`history: a hole just below seq ${repair.below} at start; the ${repair.dropped} rows under it dropped, to be copied again from the members`)
      }
      yield* copyOnce(node, journal, client, seen, record, transport.peerHttp).pipe(
        Effect.flatMap(Effect.sleep),
        Effect.forever,
        Effect.annotateLogs({ role: "history" }),
        Effect.forkScoped
      )
    })
  )
