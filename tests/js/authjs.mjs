// Encodes and decodes session tokens with the real Auth.js v5 (@auth/core/jwt) and
// NextAuth v4 (next-auth/jwt), for tests/server/test_auth.py.
//
// stdin: a JSON array of operations, each one of
//   {"op": "encode", "lib": "v5", "token": {...}, "secret": "s" | ["s1", "s2"], "salt": "...", "maxAge": 60}
//   {"op": "encode", "lib": "v4", "token": {...}, "secret": "s", "maxAge": 60}
//   {"op": "decode", "lib": "v5" | "v4", "token": "<jwe>", "secret": ..., "salt": "..."}
// stdout: a JSON array of results, in order: {"ok": true, "token": "<jwe>"} for an
// encode, {"ok": true, "payload": {...}} for a decode, {"ok": false, "error": "..."}.
import * as v5 from "@auth/core/jwt";
import v4 from "next-auth/jwt";

async function run(op) {
  const lib = op.lib === "v4" ? v4 : v5;
  if (op.op === "encode") {
    const params = { token: op.token, secret: op.secret, maxAge: op.maxAge };
    if (op.lib !== "v4") params.salt = op.salt;
    return { ok: true, token: await lib.encode(params) };
  }
  if (op.op === "decode") {
    const params = { token: op.token, secret: op.secret };
    if (op.lib !== "v4") params.salt = op.salt;
    return { ok: true, payload: await lib.decode(params) };
  }
  throw new Error(`unknown op ${op.op}`);
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const results = [];
for (const op of JSON.parse(input)) {
  try {
    results.push(await run(op));
  } catch (e) {
    results.push({ ok: false, error: String(e?.message ?? e) });
  }
}
process.stdout.write(JSON.stringify(results));
