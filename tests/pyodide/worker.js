// The Worker Miniflare runs for the Pyodide tests: a JavaScript Durable Object class
// (Python ones cannot run here, see shared/reference/python-workers.md) and a queue
// consumer that records every message it receives, so the tests can read them back.
import { DurableObject } from "cloudflare:workers";

export class Counter extends DurableObject {
  async add(n) {
    const value = ((await this.ctx.storage.get("value")) ?? 0) + n;
    await this.ctx.storage.put("value", value);
    return value;
  }
  async echo(...args) {
    return args.length === 1 ? args[0] : args;
  }
  async describe(value) {
    const kind = value === null ? "null" : value instanceof Uint8Array ? "Uint8Array"
      : value instanceof ArrayBuffer ? "ArrayBuffer" : value instanceof Map ? "Map"
      : value instanceof Date ? "Date" : Array.isArray(value) ? "Array" : typeof value;
    return { kind, json: kind === "undefined" ? null : JSON.stringify(value) };
  }
  async fail(message) {
    throw new Error(message);
  }
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/id") return new Response(this.ctx.id.toString());
    const body = await request.text();
    return new Response(JSON.stringify({
      method: request.method, path: url.pathname, body,
      header: request.headers.get("x-test"),
    }), { status: 201, headers: { "content-type": "application/json", "x-reply": "yes" } });
  }
}

export default {
  async fetch() {
    return new Response("flarebase pyodide test worker");
  },
  async queue(batch, env) {
    for (const message of batch.messages) {
      const body = message.body;
      const kind = body === null ? "null" : body instanceof Uint8Array ? "Uint8Array"
        : body instanceof ArrayBuffer ? "ArrayBuffer" : body instanceof Map ? "Map"
        : body instanceof Date ? "Date" : Array.isArray(body) ? "Array" : typeof body;
      const json = kind === "ArrayBuffer" ? JSON.stringify([...new Uint8Array(body)])
        : kind === "Uint8Array" ? JSON.stringify([...body])
        : kind === "Date" ? JSON.stringify(body.getTime()) : JSON.stringify(body ?? null);
      await env.RECEIVED.put(`${batch.queue}:${message.id}`, JSON.stringify({ kind, json }));
      message.ack();
    }
  },
};
