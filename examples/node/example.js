"use strict";
// An asyncflow client in Node.js, written from proto/asyncflow/v1/task_service.proto
// alone (docs/clients.md, docs/stream-protocol.md):
//
//   1. register a task type;
//   2. make a refused call and read its google.rpc.ErrorInfo;
//   3. create tasks at stage "fetch";
//   4. run them on a WorkTasks stream: stage "fetch" hands on to stage
//      "store", which finishes the task; a duplicate report shows how a
//      refused item comes back on the stream;
//   5. read the tasks back.
//
//   node example.js [ADDRESS] [TASK_TYPE] [COUNT]   (default localhost:50051 node_demo 5)
//
// Against a server with TLS and tokens (docs/security.md), the same variables as
// the Python SDK: ASYNCFLOW_TLS_CA_FILE (TLS; ASYNCFLOW_TLS=1 for the system's
// CAs), ASYNCFLOW_TLS_CERT_FILE and ASYNCFLOW_TLS_KEY_FILE (mutual TLS), and
// ASYNCFLOW_TOKEN (sent as `authorization: Bearer ...` on every call).
//
// The last line printed is `RESULT {...}` (JSON) for scripts; the exit status
// is 0 when every task ended SUCCESS at stage "store".

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const { describeError } = require("./status");

const PROTO = path.join(__dirname, "..", "..", "proto", "asyncflow", "v1", "task_service.proto");
// The options an asyncflow client needs (docs/errors.md):
const LOADER_OPTIONS = {
  keepCase: true, // field names as in the .proto (task_id, lease_token), as the docs write them
  longs: String, // int64 fields (times, positions, counts) as decimal strings, never rounded
  enums: String, // "TASK_STATUS_SUCCESS" rather than 3
  defaults: true, // unset fields read as their zero value ("" / 0 / false), not undefined
  oneofs: true, // a virtual field names the oneof member that is set: message.response === "tasks"
};
const { TaskService } = grpc.loadPackageDefinition(
  protoLoader.loadSync(PROTO, LOADER_OPTIONS),
).asyncflow.v1;

const [address = process.env.ASYNCFLOW_ADDRESS || "localhost:50051"] = process.argv.slice(2, 3);
const taskType = process.argv[3] || "node_demo";
const count = Number(process.argv[4] || 5);
const env = process.env;
const client = new TaskService(address, channelCredentials());
const metadata = new grpc.Metadata();
if (env.ASYNCFLOW_TOKEN) metadata.set("authorization", `Bearer ${env.ASYNCFLOW_TOKEN}`);

/** TLS when a TLS variable is set, else plaintext. */
function channelCredentials() {
  const read = (name) => (env[name] ? fs.readFileSync(env[name]) : null);
  const tls = ["ASYNCFLOW_TLS_CA_FILE", "ASYNCFLOW_TLS_CERT_FILE"].some((name) => env[name]);
  if (!tls && !["1", "true"].includes(env.ASYNCFLOW_TLS)) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    read("ASYNCFLOW_TLS_CA_FILE"),
    read("ASYNCFLOW_TLS_KEY_FILE"),
    read("ASYNCFLOW_TLS_CERT_FILE"),
  );
}

/** A unary call as a promise, with a 10 s deadline. */
function call(method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + 10_000);
    const done = (err, reply) => (err ? reject(err) : resolve(reply));
    client[method](request, metadata, { deadline }, done);
  });
}

/** The refused call's status, or throws if it was not refused. */
async function refused(method, request) {
  try {
    await call(method, request);
  } catch (err) {
    return describeError(err);
  }
  throw new Error(`${method} was expected to be refused`);
}

/** One stage of a task: what the handler would do, as a SetTaskRequest. */
function runStage(task) {
  const context = JSON.parse(task.context || "{}");
  const report = { task_id: task.task_id, lease_token: task.lease.token };
  if (task.task_stage === "fetch") {
    context.page = `page-${context.n}`;
    return { ...report, next_stage: { task_stage: "store" }, context: JSON.stringify(context) };
  }
  if (task.task_stage === "store") {
    context.stored = true;
    return { ...report, success: {}, context: JSON.stringify(context) };
  }
  return { ...report, fail: { error_message: `unknown stage ${task.task_stage}` } };
}

/**
 * Run the type's tasks on one WorkTasks stream until `expected` of them have
 * succeeded, then half-close it. Resolves with what happened on the stream.
 */
function work(expected) {
  return new Promise((resolve, reject) => {
    const stream = client.WorkTasks(metadata);
    const seen = { succeeded: [], duplicate: null, streamId: "", pushes: 0 };
    const sent = new Map(); // task_id -> its last report
    let duplicateSent = false;
    let closing = false;
    const closeWhenDone = () => {
      if (!closing && seen.succeeded.length === expected && seen.duplicate) {
        closing = true;
        stream.end(); // half-close: the server answers what it got, then ends with OK
      }
    };
    stream.on("data", (message) => {
      switch (message.response) {
        case "subscribed":
          seen.streamId = message.subscribed.stream_id;
          break;
        case "tasks": {
          const tasks = message.tasks.tasks;
          seen.pushes += 1;
          // Acknowledge first: started tasks stay ours if the stream breaks,
          // un-started ones go straight back to the queue.
          stream.write({ started: { task_ids: tasks.map((t) => t.task_id) } });
          const reports = tasks.map(runStage);
          for (const report of reports) sent.set(report.task_id, report);
          stream.write({ reports: { reports } });
          break;
        }
        case "report_results":
          for (const result of message.report_results.results) {
            if (result.error) {
              // A refused item (asyncflow.v1.ItemError): the stream goes on.
              seen.duplicate = { task_id: result.task_id, ...result.error };
            } else if (result.task.status === "TASK_STATUS_SUCCESS") {
              seen.succeeded.push(result.task.task_id);
              if (!duplicateSent) {
                // Send the same report again: refused, and nothing changes.
                duplicateSent = true;
                stream.write({ reports: { reports: [sent.get(result.task_id)] } });
              }
            }
          }
          closeWhenDone();
          break;
        default:
          break;
      }
    });
    stream.on("status", (status) => {
      if (status.code === grpc.status.OK) resolve(seen);
      else reject(new Error(`stream ended with ${grpc.status[status.code]}: ${status.details}`));
    });
    stream.on("error", () => {}); // the status handler above reports it
    // At most 2 un-reported tasks at once: the server pushes as reports free slots.
    const subscribe = { task_types: [taskType], window: 2, worker_id: `node-${process.pid}` };
    stream.write({ subscribe });
  });
}

async function main() {
  const registered = await call("RegisterTaskType", {
    task_type: taskType,
    max_processing_time_seconds: 60,
    max_retry_num: 3,
  });
  const config = registered.task_type;
  console.log(`registered ${config.task_type}: tables ${config.begin_pos}..${config.end_pos}`);

  const notFound = await refused("CreateTask", { task_type: "no_such_type_here" });
  console.log(`refused: ${notFound.code} ${notFound.reason} (field ${notFound.field})`);

  const run = crypto.randomBytes(4).toString("hex");
  const created = await call("CreateTasks", {
    tasks: Array.from({ length: count }, (_, n) => ({
      task_type: taskType,
      task_stage: "fetch",
      context: JSON.stringify({ n }),
      idempotency_key: `node-${run}-${n}`,
    })),
  });
  const ids = created.results.map((r) => r.task.task_id);
  console.log(`created ${ids.length} tasks`);

  const worked = await work(ids.length);
  console.log(
    `stream ${worked.streamId}: ${worked.succeeded.length} succeeded in ${worked.pushes} pushes;` +
      ` duplicate report refused: ${worked.duplicate.reason}`,
  );

  let ok = true;
  for (const id of ids) {
    const { task } = await call("GetTask", { task_id: id });
    console.log(`${id}: ${task.status} stage=${task.task_stage} context=${task.context}`);
    ok = ok && task.status === "TASK_STATUS_SUCCESS" && task.task_stage === "store";
  }
  console.log(`RESULT ${JSON.stringify({ task_type: taskType, ids, refused: notFound, duplicate: worked.duplicate })}`);
  return ok;
}

main()
  .then((ok) => {
    process.exitCode = ok ? 0 : 1;
  })
  .catch((err) => {
    console.error(err.code !== undefined ? describeError(err) : err);
    process.exitCode = 1;
  })
  .finally(() => client.close());
