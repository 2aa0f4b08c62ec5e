// Runs flarebase.platform.workers under Pyodide 0.28.2 (the version Python Workers
// run) against Miniflare's real D1, KV, R2, Queues and Durable Objects.
//
//   node tests/pyodide/run.mjs [--only NAME_SUBSTRING] [--summary FILE]
//
// Loads Pyodide once, offline, mounts src/ and tests/ with NODEFS and runs
// runner.py inside it, which prints one line per test and a JSON summary
// (to --summary FILE, and as the last stdout line after SUMMARY_MARKER).
import { Miniflare, Request, Response, Headers } from "miniflare";
import { loadPyodide } from "pyodide-0.28";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..");
const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

const options = {
  modules: true,
  scriptPath: path.join(here, "worker.js"),
  compatibilityDate: "2025-09-29",
  // The binding names of tests/conformance/wrangler.toml, plus the ones the
  // Pyodide-only checks use.
  d1Databases: ["DB"],
  kvNamespaces: ["KV", "RECEIVED"],
  r2Buckets: ["BUCKET"],
  queueProducers: { QUEUE: "jobs" },
  queueConsumers: { jobs: { maxBatchSize: 10, maxBatchTimeout: 0 } },
  durableObjects: { COUNTERS: "Counter" },
  bindings: { GREETING: "hello", SETTINGS: { retries: 3, name: null } },
};
let mf = new Miniflare(options);

// A fresh Miniflare and its bindings. Miniflare's Node-side proxies make synchronous
// calls through a worker thread; under load an internal assertion there can fail
// ("false == true") and break every later call, so the runner restarts on it.
async function restart() {
  await mf.dispose();
  mf = new Miniflare(options);
  return await mf.getBindings();
}

let exitCode = 1;
try {
  const env = await mf.getBindings();
  // A Durable Object stub's fetch() needs Miniflare's own Request/Response.
  globalThis.Request = Request;
  globalThis.Response = Response;
  globalThis.Headers = Headers;
  const pyodide = await loadPyodide({
    stdout: (line) => process.stdout.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
  });
  for (const [dir, mount] of [["src", "/mnt/src"], ["tests", "/mnt/tests"]]) {
    pyodide.FS.mkdirTree(mount);
    pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: path.join(repo, dir) }, mount);
  }
  pyodide.globals.set("js_env", env);
  pyodide.globals.set("restart", restart);
  pyodide.globals.set("only", option("--only") ?? "");
  const summary = await pyodide.runPythonAsync(`
import sys
sys.dont_write_bytecode = True  # src/ and tests/ are the real folders: no __pycache__ there
sys.path[:0] = ["/mnt/tests/pyodide/shim", "/mnt/tests/pyodide", "/mnt/src", "/mnt"]
import runner
await runner.main(js_env, only, restart)
`);
  const file = option("--summary");
  if (file) fs.writeFileSync(file, summary);
  const parsed = JSON.parse(summary);
  exitCode = parsed.failed === 0 && parsed.errors.length === 0 ? 0 : 1;
} catch (e) {
  console.error(String(e?.stack ?? e).split("\n").filter((l) => !l.trim().startsWith("at ")).join("\n"));
} finally {
  await mf.dispose();
}
process.exit(exitCode);
