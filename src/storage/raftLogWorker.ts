// The raft.db writer thread (node:worker_threads): it owns the connection that writes the Raft
// log and runs each Ready's persist transaction (one fsync, synchronous=FULL) off the main
// thread, so the event loop keeps serving HTTP and peers meanwhile. RaftLog.ts starts it and
// sends one request at a time: the next Ready is only produced after this one's reply.
//
// A separate entry module on purpose (a worker needs its own file): bundles build it beside the
// main entry, as raftLogWorker.mjs next to the chunk that loads RaftLog.ts. It imports no
// `effect`: failures cross back as data (WriterFailure) and are typed on the main thread.
import Database from "better-sqlite3"
import { parentPort, workerData } from "node:worker_threads"
import {
  configureConnection,
  describeFailure,
  type FromWriter,
  makeLogWriter,
  type PersistRequest,
  type ToWriter,
  type WriterData
} from "./raftLogWriter.js"
import { readPragmas } from "./sqliteSettings.js"
import { StorageInvariantViolation } from "./StorageInvariantViolation.js"

if (parentPort === null) throw new Error("raftLogWorker runs as a worker thread (see RaftLog.ts)")
const port = parentPort
const { path, busyTimeoutMs } = workerData as WriterData
const reply = (message: FromWriter): void => port.postMessage(message)
const failureOf = (error: unknown) => describeFailure(error, error instanceof StorageInvariantViolation)

const open = () => {
  const db = new Database(path, { timeout: busyTimeoutMs })
  try {
    configureConnection(db, busyTimeoutMs)
    const write = makeLogWriter(db)
    return { db, persist: db.transaction((r: PersistRequest) => write(r)) }
  } catch (error) {
    db.close()
    throw error
  }
}

let store: ReturnType<typeof open> | undefined
try {
  store = open()
  reply({ _tag: "Opened" })
} catch (error) {
  // The main thread fails every request from now on and ends this thread.
  reply({ _tag: "OpenFailed", failure: failureOf(error) })
}

port.on("message", (message: ToWriter) => {
  switch (message._tag) {
    case "Persist":
      try {
        // IMMEDIATE: take the write lock at BEGIN; COMMIT returns once the WAL is fsynced.
        store!.persist.immediate(message.request)
        reply({ _tag: "Done", id: message.id })
      } catch (error) {
        reply({ _tag: "Done", id: message.id, failure: failureOf(error) })
      }
      return
    case "Pragmas":
      try {
        reply({ _tag: "Done", id: message.id, value: readPragmas(store!.db) })
      } catch (error) {
        reply({ _tag: "Done", id: message.id, failure: failureOf(error) })
      }
      return
    case "Close":
      if (store?.db.open) store.db.close()
      port.close()
      return
  }
})
