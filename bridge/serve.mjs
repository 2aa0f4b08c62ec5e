// Runs the bridge Worker (src/index.js) on Miniflare, on a loopback port, with the
// bindings given as JSON -- the same D1, KV, R2 and Queues implementations that
// `wrangler dev` uses, offline. flarebase's tests and benchmarks start it through
// flarebase.platform.bridge.miniflare; by hand:
//
//   echo '{"secret": "0123456789abcdef", "d1Databases": {"DB": "db"}}' | node serve.mjs
//
// Input (a file named as the first argument, or stdin):
//   secret            BRIDGE_SECRET (required, at least 16 characters)
//   host, port        where to listen (default 127.0.0.1, a free port)
//   compatibilityDate the Worker's (default 2025-09-29)
//   persist           a folder for the bindings' state; absent: in memory
//   d1Databases, kvNamespaces, r2Buckets, queueProducers   {BINDING: name or id}
//   allowReset        true enables the admin.reset op (tests only)
//   consumeQueues     [queue, ...]: make the bridge their consumer, which acknowledges and
//                     drops every message (tests only: Miniflare checks a message's size
//                     and delay only on a queue that has a consumer)
//   vectorizeMocks    [BINDING, ...]: an in-memory *mock* of Vectorize (tests only;
//                     Miniflare has no Vectorize), see test/mock-vectorize.js
// Output: one JSON line {"url": "http://127.0.0.1:PORT"} once it is ready. It stops
// on SIGTERM/SIGINT, or when stdin closes (so it never outlives the process that
// started it with a pipe).

import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const here = dirname(fileURLToPath(import.meta.url));

function readInput() {
  const path = process.argv[2];
  return JSON.parse(readFileSync(path && path !== "-" ? path : 0, "utf8"));
}

const input = readInput();
if (typeof input.secret !== "string" || input.secret.length < 16) {
  console.error("serve.mjs: `secret` must be a string of at least 16 characters");
  process.exit(2);
}

const persist = input.persist
  ? {
      d1Persist: join(input.persist, "d1"),
      kvPersist: join(input.persist, "kv"),
      r2Persist: join(input.persist, "r2"),
      durableObjectsPersist: join(input.persist, "do"),
    }
  : {};

const bridge = {
  name: "flarebase-bridge",
  modules: true,
  scriptPath: join(here, "src", "index.js"),
  compatibilityDate: input.compatibilityDate ?? "2025-09-29",
  bindings: {
    BRIDGE_SECRET: input.secret,
    ...(input.allowReset ? { BRIDGE_ALLOW_RESET: "true" } : {}),
  },
  d1Databases: input.d1Databases ?? {},
  kvNamespaces: input.kvNamespaces ?? {},
  r2Buckets: input.r2Buckets ?? {},
  queueProducers: input.queueProducers ?? {},
  queueConsumers: Object.fromEntries((input.consumeQueues ?? []).map((q) => [q, { maxBatchTimeout: 0 }])),
  durableObjects: {
    BRIDGE_LEDGER: { className: "FlarebaseLedger", useSQLite: true },
    BRIDGE_OBJECTS: { className: "FlarebaseObject", useSQLite: true },
  },
  wrappedBindings: Object.fromEntries(
    (input.vectorizeMocks ?? []).map((name) => [name, { scriptName: "mock-vectorize", bindings: { NAME: name } }]),
  ),
};

const workers = [bridge];
if ((input.vectorizeMocks ?? []).length) {
  workers.push({
    name: "mock-vectorize",
    modules: true,
    scriptPath: join(here, "test", "mock-vectorize.js"), // a wrapped binding: no compatibilityDate
  });
}

const mf = new Miniflare({
  host: input.host ?? "127.0.0.1",
  port: input.port ?? 0,
  ...persist,
  workers,
});

const url = await mf.ready;
process.stdout.write(JSON.stringify({ url: url.origin }) + "\n");

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose().catch(() => {});
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
if (process.argv[2] && process.argv[2] !== "-") {
  // The input came from a file, so stdin is free to tell us when our parent is gone.
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
}
