/**
 * The flarebase bridge Worker.
 *
 * It exposes the bindings of its own wrangler.toml -- D1, KV, R2, Vectorize, Queue
 * producers and the storage of a flarebase-defined Durable Object class -- over
 * authenticated HTTP, for flarebase's `bridge` provider (Python). It has no
 * dependencies and runs unchanged on Cloudflare and on Miniflare.
 *
 * Protocol, version 1
 * -------------------
 *   GET  /v1/health  -> {"ok": true, "protocol": 1}           the one unauthenticated route
 *   POST /v1/ops     body {"ops": [op, ...]} -> {"results": [result, ...]}
 *   POST /v1/stream  one op, in the `x-bridge-op` header. The request body is the op's
 *                    value (KV put, R2 put, R2 part), in signed frames (below), and/or
 *                    the response body is the bytes of its result (KV get as bytes, R2
 *                    get); the rest of the result travels in the `x-bridge-result`
 *                    response header (URI-encoded JSON). Bodies stream both ways.
 *
 * An op is {"op": "<product>.<method>", "binding": "<NAME>", ...arguments} (see OPS
 * below); a result is {"ok": value} or {"error": {"name", "message", "code"?}}. The ops
 * of one request run one after the other, in order, and one failing does not stop the
 * others. Bytes inside JSON are {"$bytes": "<base64>"}. Cloudflare's results are passed
 * through unchanged, except that bytes are encoded that way (D1 returns BLOB columns
 * as arrays of numbers; they are sent as {"$bytes"} too).
 *
 * Authentication
 * --------------
 * Every request but /v1/health carries
 *   x-bridge-timestamp       seconds since the UNIX epoch
 *   x-bridge-nonce           16 to 64 characters [A-Za-z0-9_-], never reused
 *   x-bridge-content-sha256  hex SHA-256 of the body (/v1/ops), or STREAMING-FRAMES
 *   authorization            FLAREBASE-HMAC-SHA256 <hex HMAC-SHA256 of the string below>
 * signed with the shared secret BRIDGE_SECRET (`wrangler secret put BRIDGE_SECRET`;
 * locally a `.dev.vars` line or a Miniflare binding). The signed string is
 *   "FLAREBASE-HMAC-SHA256\n" + method + "\n" + path?query + "\n" + timestamp + "\n"
 *   + nonce + "\n" + body sha256 (or STREAMING-FRAMES) + "\n" + sha256(x-bridge-op or "")
 * Replay protection: the timestamp must be within BRIDGE_WINDOW_SECONDS (default 300)
 * of the Worker's clock, and a nonce is refused if it was seen within that window.
 * Nonces are remembered in the isolate's memory, which catches a replay that reaches
 * the same isolate; with BRIDGE_STRICT_REPLAY = "true" (and the BRIDGE_LEDGER Durable
 * Object bound) they are also recorded in Durable Objects, which catches every replay
 * at the cost of one Durable Object call per request. The body of /v1/ops is checked
 * against its hash before it is parsed.
 *
 * A /v1/stream body cannot be hashed before it is sent without reading it twice, so
 * it is signed frame by frame instead: each frame is a 4-byte big-endian length, a
 * 32-byte HMAC-SHA256 of "FLAREBASE-CHUNK\n" + the previous frame's HMAC (hex; the
 * request's signature for the first) + "\n" + sha256(data) (hex), and the data. A
 * zero-length frame ends the body; a frame of length 0xFFFFFFFF whose HMAC signs
 * "...\nABORT" abandons it (the sender's source failed). A frame is checked before its
 * data is passed on, and an R2 or KV write whose body is forged, abandoned or cut short
 * fails (its declared length is enforced with a FixedLengthStream).
 *
 * Idempotency: an op with "idempotencyKey" runs at most once per key (for 24 hours):
 * it is executed inside the BRIDGE_LEDGER Durable Object named by the key, which
 * stores the result and answers a repeat with it. The provider adds keys to writes
 * that are not naturally idempotent when it is allowed to retry them.
 */

import { DurableObject } from "cloudflare:workers"; // built into the runtime, not a dependency

const PROTOCOL = 1;
const SCHEME = "FLAREBASE-HMAC-SHA256";
const STREAMING = "STREAMING-FRAMES"; // the body hash of a framed /v1/stream body
const CHUNK_SCHEME = "FLAREBASE-CHUNK";
const MAX_FRAME = 1 << 20;
const ABORT = 0xffffffff; // the length of the frame by which a sender abandons its body
const MAX_OPS = 1000; // a Worker invocation may make at most 1,000 binding calls (Paid)
const LEDGER_TTL_MS = 24 * 3600 * 1000;

class BridgeError extends Error {
  constructor(message, status = 400, code = "BRIDGE_ERROR") {
    super(message);
    this.name = "BridgeError";
    this.status = status;
    this.code = code;
  }
}

// -- entry point -----------------------------------------------------------------------

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    try {
      if (url.pathname === "/v1/health" && request.method === "GET") {
        return Response.json({ ok: true, protocol: PROTOCOL });
      }
      if (request.method !== "POST" || !["/v1/ops", "/v1/stream"].includes(url.pathname)) {
        throw new BridgeError(`no route ${request.method} ${url.pathname}`, 404, "BRIDGE_NOT_FOUND");
      }
      const auth = await authenticate(request, env, url);
      if (url.pathname === "/v1/ops") {
        const body = await request.arrayBuffer();
        if ((await sha256Hex(body)) !== auth.bodySha256) {
          throw new BridgeError("body does not match x-bridge-content-sha256", 401, "BRIDGE_AUTH");
        }
        const { ops } = parseJson(new TextDecoder().decode(body));
        if (!Array.isArray(ops) || ops.length > MAX_OPS) {
          throw new BridgeError(`"ops" must be an array of at most ${MAX_OPS} ops`);
        }
        const results = [];
        for (const op of ops) results.push(await settle(env, op));
        return Response.json({ results });
      }
      return await stream(request, env, auth);
    } catch (e) {
      const status = e instanceof BridgeError ? e.status : 500;
      const code = e instanceof BridgeError ? e.code : "BRIDGE_INTERNAL";
      // serverTime lets a client with a wrong clock correct itself (the request did not run).
      return Response.json({ error: { code, message: String(e?.message ?? e), serverTime: Date.now() / 1000 } }, { status });
    }
  },

  // A queue consumer that acknowledges and drops every message. The bridge is never a
  // consumer on Cloudflare; Miniflare tests make it one (serve.mjs consumeQueues),
  // because Miniflare checks a message's size and delay only on a queue with a consumer.
  async queue(batch) {
    batch.ackAll();
  },
};

// -- authentication ----------------------------------------------------------------------

const seenNonces = new Map(); // nonce -> expiry (ms); this isolate's memory only
let cachedKey = null; // [secret, CryptoKey]: importKey once per isolate, not per request

async function hmacKey(secret) {
  if (!cachedKey || cachedKey[0] !== secret) {
    const key = await crypto.subtle.importKey("raw", utf8(secret), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
    cachedKey = [secret, key];
  }
  return cachedKey[1];
}

async function authenticate(request, env, url) {
  const secret = env.BRIDGE_SECRET;
  if (typeof secret !== "string" || secret.length < 16) {
    throw new BridgeError(
      "BRIDGE_SECRET is not set (or shorter than 16 characters): `wrangler secret put BRIDGE_SECRET`",
      500,
      "BRIDGE_NOT_CONFIGURED",
    );
  }
  const h = request.headers;
  const timestamp = h.get("x-bridge-timestamp") ?? "";
  const nonce = h.get("x-bridge-nonce") ?? "";
  const bodySha256 = (h.get("x-bridge-content-sha256") ?? "").toLowerCase();
  const authorization = h.get("authorization") ?? "";
  const fail = (message) => new BridgeError(message, 401, "BRIDGE_AUTH");
  if (!authorization.startsWith(SCHEME + " ")) throw fail(`authorization must be "${SCHEME} <signature>"`);
  if (!/^\d{1,12}$/.test(timestamp)) throw fail("x-bridge-timestamp must be seconds since the epoch");
  if (!/^[A-Za-z0-9_-]{16,64}$/.test(nonce)) throw fail("x-bridge-nonce must be 16-64 characters [A-Za-z0-9_-]");
  const streaming = url.pathname === "/v1/stream" && bodySha256 === STREAMING.toLowerCase();
  if (!streaming && !/^[0-9a-f]{64}$/.test(bodySha256)) throw fail("x-bridge-content-sha256 must be a hex SHA-256");
  const signature = hexToBytes(authorization.slice(SCHEME.length + 1).trim());
  if (!signature || signature.length !== 32) throw fail("malformed signature");

  const op = h.get("x-bridge-op") ?? "";
  const signed = streaming ? STREAMING : bodySha256;
  const canonical = [SCHEME, request.method, url.pathname + url.search, timestamp, nonce, signed, await sha256Hex(op)].join("\n");
  const key = await hmacKey(secret);
  // crypto.subtle.verify compares in constant time.
  if (!(await crypto.subtle.verify("HMAC", key, signature, utf8(canonical)))) throw fail("bad signature");

  const windowMs = 1000 * Number(env.BRIDGE_WINDOW_SECONDS ?? 300);
  if (!(windowMs > 0)) {
    throw new BridgeError("BRIDGE_WINDOW_SECONDS must be a positive number of seconds", 500, "BRIDGE_NOT_CONFIGURED");
  }
  const now = Date.now();
  if (Math.abs(now - Number(timestamp) * 1000) > windowMs) {
    throw new BridgeError(`timestamp outside the ${windowMs / 1000} s window (check the clocks)`, 401, "BRIDGE_CLOCK");
  }
  // Only a request with a valid signature gets this far, so nobody else can fill the map.
  if (seenNonces.size > 10_000) {
    for (const [n, expiry] of seenNonces) if (expiry < now) seenNonces.delete(n);
  }
  if ((seenNonces.get(nonce) ?? 0) >= now) throw fail("replayed request (nonce already used)");
  seenNonces.set(nonce, now + 2 * windowMs);
  if (env.BRIDGE_STRICT_REPLAY === "true") {
    const fresh = await ledger(env, `nonce:${nonce}`).remember(2 * windowMs);
    if (!fresh) throw fail("replayed request (nonce already used)");
  }
  return { bodySha256, op, streaming, key, signature: bytesToHex(signature) };
}

// -- running ops -----------------------------------------------------------------------------

/** Run one op; never throws: the result is {ok} or {error}. */
async function settle(env, op) {
  try {
    if (op && typeof op.idempotencyKey === "string") {
      const { idempotencyKey, ...rest } = op;
      return await ledger(env, `op:${idempotencyKey}`).runOnce(rest);
    }
    return { ok: encode(await run(env, op)) };
  } catch (e) {
    return { error: errorOf(e) };
  }
}

function errorOf(e) {
  const error = { name: e?.name ?? "Error", message: String(e?.message ?? e) };
  if (e instanceof BridgeError) error.code = e.code;
  return error;
}

async function run(env, op) {
  if (!op || typeof op !== "object" || typeof op.op !== "string") {
    throw new BridgeError('an op is an object with "op": "<product>.<method>"');
  }
  const handler = OPS[op.op];
  if (!handler) throw new BridgeError(`unknown op ${JSON.stringify(op.op)}`, 400, "BRIDGE_UNKNOWN_OP");
  const product = op.op.split(".")[0];
  const target = product === "admin" ? null : binding(env, op.binding, product);
  return await handler(target, decode(op), env);
}

/** The binding named `name`, checked to be of the product the op is for. */
function binding(env, name, product) {
  const value = typeof name === "string" ? env[name] : undefined;
  if (!value || typeof value !== "object" || kindOf(value) !== product) {
    const found = Object.keys(env).filter((k) => kindOf(env[k]) === product);
    throw new BridgeError(
      `no ${product} binding named ${JSON.stringify(name)} (this bridge has: ${found.join(", ") || "none"})`,
      400,
      "BRIDGE_NO_BINDING",
    );
  }
  return value;
}

/** What kind of binding an env value is, by the methods it has (secrets and vars: null). */
function kindOf(value) {
  if (!value || typeof value !== "object") return null;
  const has = (m) => typeof value[m] === "function";
  if (has("prepare") && has("batch")) return "d1";
  if (has("getWithMetadata")) return "kv";
  if (has("createMultipartUpload")) return "r2";
  if (has("sendBatch")) return "queue";
  if (has("getByIds") && has("upsert")) return "vectorize";
  if (has("idFromName")) return "do";
  return null;
}

// -- the ops ------------------------------------------------------------------------------------

const OPS = {
  // D1: results exactly as the binding returns them (BLOBs as bytes).
  "d1.all": async (db, o) => d1Result(await statement(db, o).all()),
  "d1.run": async (db, o) => d1Result(await statement(db, o).run()),
  "d1.raw": async (db, o) => (await statement(db, o).raw({ columnNames: !!o.columnNames })).map(d1Row),
  "d1.first": async (db, o) => {
    const value = o.column == null ? await statement(db, o).first() : await statement(db, o).first(o.column);
    return o.column == null ? (value === null ? null : d1Row(value)) : d1Value(value);
  },
  "d1.batch": async (db, o) => (await db.batch(o.statements.map((s) => statement(db, s)))).map(d1Result),
  "d1.exec": async (db, o) => await db.exec(o.sql),
  "d1.dump": async (db) => new Uint8Array(await db.dump()),

  // KV
  "kv.get": async (kv, o) => mapToObject(await kv.get(o.key, kvOptions(o))),
  "kv.getWithMetadata": async (kv, o) => mapToObject(await kv.getWithMetadata(o.key, kvOptions(o))),
  "kv.put": async (kv, o) => {
    await kv.put(o.key, o.value, pick(o, ["expiration", "expirationTtl", "metadata"]));
    return null;
  },
  "kv.delete": async (kv, o) => {
    await kv.delete(o.key);
    return null;
  },
  "kv.list": async (kv, o) => await kv.list(pick(o, ["prefix", "limit", "cursor"])),

  // R2 (bodies travel through /v1/stream: see STREAM_OPS)
  "r2.head": async (r2, o) => r2Object(await r2.head(o.key)),
  "r2.delete": async (r2, o) => {
    await r2.delete(o.keys);
    return null;
  },
  "r2.list": async (r2, o) => {
    const page = await r2.list(pick(o, ["limit", "prefix", "cursor", "delimiter", "startAfter", "include"]));
    return {
      objects: page.objects.map(r2Object),
      truncated: page.truncated,
      cursor: page.truncated ? page.cursor : undefined,
      delimitedPrefixes: page.delimitedPrefixes,
    };
  },
  "r2.createMultipartUpload": async (r2, o) => {
    const upload = await r2.createMultipartUpload(o.key, r2WriteOptions(o));
    return { key: upload.key, uploadId: upload.uploadId };
  },
  "r2.completeMultipartUpload": async (r2, o) =>
    r2Object(await r2.resumeMultipartUpload(o.key, o.uploadId).complete(o.parts)),
  "r2.abortMultipartUpload": async (r2, o) => {
    await r2.resumeMultipartUpload(o.key, o.uploadId).abort();
    return null;
  },

  // Queues: message bodies are JSON values, text or bytes ({"$bytes"}).
  "queue.send": async (q, o) => {
    await q.send(o.body, pick(o, ["contentType", "delaySeconds"]));
    return null;
  },
  "queue.sendBatch": async (q, o) => {
    await q.sendBatch(o.messages, pick(o, ["delaySeconds"]));
    return null;
  },

  // Vectorize (V2): every binding call, results as returned.
  "vectorize.insert": async (ix, o) => await ix.insert(o.vectors),
  "vectorize.upsert": async (ix, o) => await ix.upsert(o.vectors),
  "vectorize.query": async (ix, o) => await ix.query(o.vector, o.options ?? {}),
  "vectorize.queryById": async (ix, o) => await ix.queryById(o.id, o.options ?? {}),
  "vectorize.getByIds": async (ix, o) => await ix.getByIds(o.ids),
  "vectorize.deleteByIds": async (ix, o) => await ix.deleteByIds(o.ids),
  "vectorize.describe": async (ix) => await ix.describe(),

  // Durable Object storage of the bridge's own class (FlarebaseObject), by object name
  // or id: {"op": "do.storage", "binding", "name" | "id", "calls": [{"method", "args"}]}.
  "do.storage": async (ns, o) => {
    if (o.binding === "BRIDGE_LEDGER") throw new BridgeError("BRIDGE_LEDGER is the bridge's own", 403, "BRIDGE_FORBIDDEN");
    return await objectStub(ns, o).storage(o.calls, !!o.transaction);
  },
  "do.id": async (ns, o) => (o.name != null ? ns.idFromName(o.name) : ns.newUniqueId()).toString(),

  // Test support, off unless BRIDGE_ALLOW_RESET = "true": empty every binding.
  "admin.reset": async (_, __, env) => await reset(env),
};

// ---- D1 helpers

function statement(db, o) {
  if (typeof o.sql !== "string") throw new BridgeError('a D1 op needs "sql"');
  const stmt = db.prepare(o.sql);
  return o.params && o.params.length ? stmt.bind(...o.params) : stmt;
}

/** BLOB columns come back as arrays of byte values: send them as bytes. */
function d1Value(v) {
  return Array.isArray(v) ? new Uint8Array(v) : v;
}

function d1Row(row) {
  if (Array.isArray(row)) return row.map(d1Value);
  const out = {};
  for (const k in row) out[k] = d1Value(row[k]);
  return out;
}

function d1Result(result) {
  return { ...result, results: (result.results ?? []).map(d1Row) };
}

// ---- KV helpers

function kvOptions(o) {
  const options = { type: o.type ?? "text" };
  if (o.cacheTtl != null) options.cacheTtl = o.cacheTtl;
  return options;
}

function mapToObject(value) {
  return value instanceof Map ? Object.fromEntries(value) : value;
}

// ---- R2 helpers

/** R2 options from JSON: dates are epoch milliseconds; onlyIf may be HTTP headers. */
function r2WriteOptions(o) {
  const options = pick(o, ["customMetadata", "storageClass", "md5", "sha1", "sha256", "sha384", "sha512"]);
  for (const name of ["md5", "sha1", "sha256", "sha384", "sha512"]) {
    // A checksum is a hex string or an ArrayBuffer (bytes arrive as a Uint8Array).
    if (options[name] instanceof Uint8Array) options[name] = options[name].slice().buffer;
  }
  if (o.httpMetadata) {
    options.httpMetadata = { ...o.httpMetadata };
    if (o.httpMetadata.cacheExpiry != null) options.httpMetadata.cacheExpiry = new Date(o.httpMetadata.cacheExpiry);
  }
  if (o.onlyIf) options.onlyIf = r2Conditional(o.onlyIf);
  return options;
}

function r2Conditional(c) {
  if (c.headers) return new Headers(c.headers);
  const out = pick(c, ["etagMatches", "etagDoesNotMatch", "secondsGranularity"]);
  if (c.uploadedBefore != null) out.uploadedBefore = new Date(c.uploadedBefore);
  if (c.uploadedAfter != null) out.uploadedAfter = new Date(c.uploadedAfter);
  return out;
}

/** An R2Object as JSON: dates in epoch milliseconds, checksums in hex. */
function r2Object(obj) {
  if (!obj) return null;
  const http = obj.httpMetadata ? { ...obj.httpMetadata } : obj.httpMetadata;
  if (http && http.cacheExpiry instanceof Date) http.cacheExpiry = http.cacheExpiry.getTime();
  return {
    key: obj.key,
    version: obj.version,
    size: obj.size,
    etag: obj.etag,
    httpEtag: obj.httpEtag,
    uploaded: obj.uploaded.getTime(),
    httpMetadata: http,
    customMetadata: obj.customMetadata,
    range: obj.range,
    checksums: obj.checksums.toJSON(),
    storageClass: obj.storageClass,
  };
}

// -- /v1/stream: one op with a streamed body ---------------------------------------------------

const STREAM_OPS = {
  // KV get as bytes: the value is the response body.
  "kv.get": async (kv, o) => {
    const value = await kv.get(o.key, { ...kvOptions(o), type: "stream" });
    return value === null ? [{ found: false }, null] : [{ found: true }, value];
  },
  "kv.getWithMetadata": async (kv, o) => {
    const { value, metadata, cacheStatus } = await kv.getWithMetadata(o.key, { ...kvOptions(o), type: "stream" });
    return [{ found: value !== null, metadata, cacheStatus }, value];
  },
  "kv.put": async (kv, o, body) => {
    // With its length declared, a body cut short fails the write instead of storing less.
    const value = o.length == null ? body() : fixedLength(body(), o.length);
    await kv.put(o.key, value, pick(o, ["expiration", "expirationTtl", "metadata"]));
    return [null, null];
  },
  // R2 get: the object's metadata in the header, its body (if any) as the response body.
  "r2.get": async (r2, o) => {
    const options = {};
    if (o.onlyIf) options.onlyIf = r2Conditional(o.onlyIf);
    if (o.range) options.range = o.range.headers ? new Headers(o.range.headers) : o.range;
    const obj = await r2.get(o.key, options);
    if (!obj) return [null, null];
    const hasBody = "body" in obj; // an object without a body: onlyIf did not hold
    return [{ ...r2Object(obj), hasBody }, hasBody ? obj.body : null];
  },
  // R2 writes need a stream of known length: the op says how long the body is.
  "r2.put": async (r2, o, body) => {
    const value = o.length == null ? null : fixedLength(body(), o.length);
    return [r2Object(await r2.put(o.key, value, r2WriteOptions(o))), null];
  },
  "r2.uploadPart": async (r2, o, body) => {
    const upload = r2.resumeMultipartUpload(o.key, o.uploadId);
    const part = await upload.uploadPart(o.partNumber, fixedLength(body(), o.length ?? 0));
    return [{ partNumber: part.partNumber, etag: part.etag }, null];
  },
};

async function stream(request, env, auth) {
  const op = parseJson(auth.op || "null");
  if (!op || typeof op.op !== "string" || !STREAM_OPS[op.op]) {
    throw new BridgeError(`x-bridge-op must name one of: ${Object.keys(STREAM_OPS).join(", ")}`);
  }
  // The body as it arrives, each frame checked on the way (see deframe). A bad or
  // missing frame fails the stream, which fails the write that reads it.
  const check = { bad: null };
  const body = () => {
    if (!auth.streaming) throw new BridgeError(`x-bridge-content-sha256 must be ${STREAMING} on /v1/stream`, 401, "BRIDGE_AUTH");
    return deframe(request.body ?? new Response("").body, auth.key, auth.signature, check);
  };
  let outcome, responseBody = null;
  try {
    const target = binding(env, op.binding, op.op.split(".")[0]);
    let result;
    [result, responseBody] = await STREAM_OPS[op.op](target, decode(op), body);
    outcome = { ok: encode(result) };
  } catch (e) {
    outcome = { error: errorOf(e) };
  }
  if (check.bad) throw new BridgeError(check.bad, 401, "BRIDGE_AUTH");
  const headers = { "x-bridge-result": encodeURIComponent(JSON.stringify(outcome)) };
  return new Response(responseBody, { headers });
}

/**
 * A framed body, checked frame by frame. A frame is a 4-byte big-endian length, a 32-byte
 * HMAC-SHA256 and the data; the HMAC signs "FLAREBASE-CHUNK\n" + the previous signature
 * (hex; the request's own for the first frame) + "\n" + sha256(data) (hex). A zero-length
 * frame ends the body. The output is the data alone; nothing is held beyond one frame.
 */
function deframe(body, key, requestSignature, check) {
  const parts = [];
  let have = 0;
  let previous = requestSignature;
  let ended = false;
  const take = (n) => {
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const head = parts[0];
      const used = Math.min(head.length, n - at);
      out.set(head.subarray(0, used), at);
      at += used;
      if (used === head.length) parts.shift();
      else parts[0] = head.subarray(used);
    }
    have -= n;
    return out;
  };
  const fail = (message) => {
    check.bad = message;
    return new BridgeError(message, 401, "BRIDGE_AUTH");
  };
  return body.pipeThrough(
    new TransformStream({
      async transform(chunk, controller) {
        if (ended) throw fail("data after the body's last frame");
        parts.push(new Uint8Array(chunk));
        have += chunk.byteLength;
        while (!ended && have >= 36) {
          const head = take(36);
          const length = new DataView(head.buffer).getUint32(0);
          if (length === ABORT) {
            // The sender's source failed: fail the write (not an authentication failure).
            const signed = `${CHUNK_SCHEME}\n${previous}\nABORT`;
            if (!(await crypto.subtle.verify("HMAC", key, head.subarray(4), utf8(signed)))) throw fail("a body frame has a bad signature");
            throw new BridgeError("the client abandoned the body: its source failed", 400, "BRIDGE_ABORTED");
          }
          if (length > MAX_FRAME) throw fail(`a body frame of ${length} bytes exceeds ${MAX_FRAME}`);
          if (have < length) {
            parts.unshift(head); // not all there yet: put the header back
            have += 36;
            break;
          }
          const data = take(length);
          const signed = `${CHUNK_SCHEME}\n${previous}\n${await sha256Hex(data)}`;
          const mac = head.subarray(4);
          if (!(await crypto.subtle.verify("HMAC", key, mac, utf8(signed)))) throw fail("a body frame has a bad signature");
          previous = bytesToHex(mac);
          if (length === 0) ended = true;
          else controller.enqueue(data);
        }
        if (ended && have > 0) throw fail("data after the body's last frame");
      },
      flush() {
        if (!ended) throw fail("the body ended before its last frame");
      },
    }),
  );
}

function fixedLength(stream, length) {
  const fixed = new FixedLengthStream(length);
  stream.pipeTo(fixed.writable).catch(() => {}); // an error reaches the reader of fixed.readable
  return fixed.readable;
}

// -- Durable Objects ------------------------------------------------------------------------------

function objectStub(ns, o) {
  const id = o.id != null ? ns.idFromString(o.id) : ns.idFromName(String(o.name));
  return ns.get(id);
}

/**
 * The flarebase-defined Durable Object class: its storage, driven by the bridge.
 * `storage(calls, transaction)` runs [{method, args}] against ctx.storage in order
 * (inside one transaction if asked) and returns their results. Methods: get, put,
 * delete, list, deleteAll, getAlarm, setAlarm, deleteAlarm, sql (exec, rows as
 * arrays with the column names first).
 */
export class FlarebaseObject extends DurableObject {
  async storage(calls, transaction) {
    const runAll = async (storage) => {
      const results = [];
      for (const call of calls) results.push(await this.call(storage, call));
      return results;
    };
    if (!transaction) return encode(await runAll(this.ctx.storage));
    return encode(await this.ctx.storage.transaction((txn) => runAll(txn)));
  }

  async call(storage, { method, args = [] }) {
    const s = this.ctx.storage;
    switch (method) {
      case "get":
      case "put":
      case "delete":
      case "getAlarm":
      case "setAlarm":
      case "deleteAlarm": {
        const out = await storage[method](...decode(args));
        return mapToObject(out);
      }
      case "list":
        return [...(await storage.list(decode(args[0] ?? {})))];
      case "deleteAll":
        return await s.deleteAll();
      case "sql": {
        const [query, ...bindings] = decode(args);
        const cursor = s.sql.exec(query, ...bindings);
        const rows = [...cursor.raw()];
        return { columns: cursor.columnNames, rows, rowsRead: cursor.rowsRead, rowsWritten: cursor.rowsWritten };
      }
      default:
        throw new BridgeError(`unknown storage method ${JSON.stringify(method)}`);
    }
  }

  async alarm() {} // an alarm set through the bridge fires here; the Python side polls getAlarm
}

/**
 * The bridge's own bookkeeping object: idempotency keys and (strict mode) nonces.
 * One object per key, so there is no hot spot; records expire with an alarm.
 */
export class FlarebaseLedger extends DurableObject {
  /** True the first time, false when the key was already remembered. */
  async remember(ttlMs) {
    if (await this.ctx.storage.get("seen")) return false;
    await this.ctx.storage.put("seen", true);
    await this.ctx.storage.setAlarm(Date.now() + ttlMs);
    return true;
  }

  /** Run `op` once; later calls get the stored result (blockConcurrencyWhile: no overlap). */
  async runOnce(op) {
    let outcome;
    await this.ctx.blockConcurrencyWhile(async () => {
      outcome = await this.ctx.storage.get("outcome");
      if (outcome !== undefined) return;
      try {
        outcome = { ok: encode(await run(this.env, op)) };
      } catch (e) {
        outcome = { error: errorOf(e) };
      }
      const text = JSON.stringify(outcome);
      // Storage values are limited; a large result is recorded as applied, not kept.
      const kept = text.length < 1_000_000 ? outcome : { error: { name: "BridgeError", code: "BRIDGE_REPLAY_TOO_LARGE", message: "the op ran already; its result was too large to keep for a replay" } };
      await this.ctx.storage.put("outcome", kept);
      await this.ctx.storage.setAlarm(Date.now() + LEDGER_TTL_MS);
    });
    return outcome;
  }

  async alarm() {
    await this.ctx.storage.deleteAll();
  }
}

function ledger(env, name) {
  if (!env.BRIDGE_LEDGER) {
    throw new BridgeError("idempotency keys and strict replay protection need the BRIDGE_LEDGER Durable Object binding", 500, "BRIDGE_NOT_CONFIGURED");
  }
  return env.BRIDGE_LEDGER.get(env.BRIDGE_LEDGER.idFromName(name));
}

// -- test support ---------------------------------------------------------------------------------

async function reset(env) {
  if (env.BRIDGE_ALLOW_RESET !== "true") throw new BridgeError("admin.reset is disabled", 403, "BRIDGE_FORBIDDEN");
  for (const [name, value] of Object.entries(env)) {
    const kind = kindOf(value);
    if (kind === "d1") await resetD1(value);
    if (kind === "kv") {
      for (let page = { list_complete: false }; !page.list_complete; ) {
        page = await value.list({ cursor: page.cursor });
        for (const key of page.keys) await value.delete(key.name);
      }
    }
    if (kind === "r2") {
      for (let page = { truncated: true }; page.truncated; ) {
        page = await value.list({ cursor: page.cursor });
        if (page.objects.length) await value.delete(page.objects.map((o) => o.key));
      }
    }
    if (kind === "do" && name !== "BRIDGE_LEDGER") {
      // Objects cannot be enumerated: the caller resets the ones it used by name.
    }
  }
  return null;
}

async function resetD1(db) {
  const internal = (name) => name.startsWith("sqlite_") || name.startsWith("_cf_");
  // Virtual tables first (dropping one drops its shadow tables), then the rest.
  for (const pass of ["virtual", "other"]) {
    const { results } = await db.prepare("SELECT type, name, sql FROM sqlite_master WHERE type IN ('table', 'view')").all();
    const drops = results
      .filter((r) => !internal(r.name) && (pass === "other" || /CREATE\s+VIRTUAL/i.test(r.sql ?? "")))
      .map((r) => db.prepare(`DROP ${r.type === "view" ? "VIEW" : "TABLE"} IF EXISTS "${r.name.replaceAll('"', '""')}"`));
    if (drops.length) await db.batch([db.prepare("PRAGMA defer_foreign_keys = on"), ...drops]);
  }
  const seq = await db.prepare("SELECT name FROM sqlite_master WHERE name = 'sqlite_sequence'").all();
  if (seq.results.length) await db.prepare("DELETE FROM sqlite_sequence").run();
  // Connection settings a test may have changed.
  await db.exec("PRAGMA recursive_triggers = OFF; PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = OFF");
}

// -- encoding ---------------------------------------------------------------------------------------

/** JSON -> values: {"$bytes": base64} becomes a Uint8Array, at any depth. */
function decode(value) {
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value;
  if (Array.isArray(value)) return value.map(decode);
  if (value && typeof value === "object") {
    if (typeof value.$bytes === "string" && Object.keys(value).length === 1) return base64ToBytes(value.$bytes);
    const out = {};
    for (const k in value) out[k] = decode(value[k]);
    return out;
  }
  return value;
}

/** Values -> JSON: ArrayBuffers and views become {"$bytes": base64}, Maps objects. */
function encode(value) {
  if (value instanceof ArrayBuffer) return { $bytes: bytesToBase64(new Uint8Array(value)) };
  if (ArrayBuffer.isView(value)) return { $bytes: bytesToBase64(new Uint8Array(value.buffer, value.byteOffset, value.byteLength)) };
  if (value instanceof Map) return encode(Object.fromEntries(value));
  if (value instanceof Date) return value.getTime();
  if (Array.isArray(value)) return value.map(encode);
  if (value && typeof value === "object") {
    const out = {};
    for (const k in value) out[k] = encode(value[k]);
    return out;
  }
  return value;
}

function pick(o, names) {
  const out = {};
  for (const n of names) if (o[n] !== undefined && o[n] !== null) out[n] = o[n];
  return out;
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    throw new BridgeError("request is not valid JSON");
  }
}

const utf8 = (s) => new TextEncoder().encode(s);

async function sha256Hex(data) {
  return bytesToHex(new Uint8Array(await crypto.subtle.digest("SHA-256", typeof data === "string" ? utf8(data) : data)));
}

function bytesToHex(bytes) {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function hexToBytes(hex) {
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

function bytesToBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function base64ToBytes(b64) {
  const binary = atob(b64);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}
