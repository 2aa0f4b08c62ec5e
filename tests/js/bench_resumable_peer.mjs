// The benchmark's peer (bench/bench_chat.py): a chat backend built the way vercel/chatbot
// builds one, with the npm `resumable-stream` package on a real redis-server, the AI
// SDK's createUIMessageStream + JsonToSseTransformStream, and a Redis sorted set per
// user for the chat list (as Upstash-based chat templates keep it).
//
//   REDIS_URL=redis://127.0.0.1:6379 PORT=8790 node bench_resumable_peer.mjs
//
// POST /api/chat              {id, messages, delayMs?}: echoes the last user text word
//                             by word (the same chunks as flarebase's echo model) as a
//                             resumable stream
// GET  /api/chat/:id/stream   resumeExistingStream (204 when none, or when finished:
//                             resumable-stream cannot replay a finished stream)
// GET  /api/history           ?limit=&ending_before=  (user "bench"), {chats, hasMore}
import http from "node:http";
import { randomUUID } from "node:crypto";
import { createClient } from "redis";
import { createResumableStreamContext } from "resumable-stream";
import { createUIMessageStream, JsonToSseTransformStream, UI_MESSAGE_STREAM_HEADERS } from "ai";

const url = process.env.REDIS_URL;
const publisher = createClient({ url });
const subscriber = createClient({ url });
const store = createClient({ url });
await Promise.all([publisher.connect(), subscriber.connect(), store.connect()]);
const streams = createResumableStreamContext({ waitUntil: null, publisher, subscriber });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function echo(text, delayMs) {
  const words = text.match(/\s*\S+\s*|\s+/g) ?? [];
  return createUIMessageStream({
    execute: async ({ writer }) => {
      writer.write({ type: "start", messageId: randomUUID() });
      writer.write({ type: "start-step" });
      writer.write({ type: "text-start", id: "text-0-1" });
      for (const word of words) {
        if (delayMs) await sleep(delayMs);
        writer.write({ type: "text-delta", id: "text-0-1", delta: word });
      }
      writer.write({ type: "text-end", id: "text-0-1" });
      writer.write({ type: "finish-step" });
      writer.write({ type: "finish", finishReason: "stop" });
    },
  }).pipeThrough(new JsonToSseTransformStream());
}

async function pipe(stream, res) {
  res.writeHead(200, UI_MESSAGE_STREAM_HEADERS);
  for await (const piece of stream) res.write(piece);
  res.end();
}

async function body(req) {
  let raw = "";
  for await (const piece of req) raw += piece;
  return JSON.parse(raw);
}

async function history(query, res) {
  const limit = Number(query.get("limit") ?? 10);
  const before = query.get("ending_before");
  let max = "+inf";
  if (before) max = `(${await store.zScore("user:bench:chats", before)}`;
  const ids = await store.zRange("user:bench:chats", max, "-inf", {
    BY: "SCORE",
    REV: true,
    LIMIT: { offset: 0, count: limit + 1 },
  });
  const multi = store.multi();
  for (const id of ids.slice(0, limit)) multi.hGetAll(`chat:${id}`);
  const chats = await multi.exec();
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ chats, hasMore: ids.length > limit }));
}

const server = http.createServer(async (req, res) => {
  try {
    const { pathname, searchParams } = new URL(req.url, "http://peer");
    if (req.method === "POST" && pathname === "/api/chat") {
      const input = await body(req);
      const last = input.messages[input.messages.length - 1];
      const text = last.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
      const streamId = randomUUID();
      await store.set(`chat:${input.id}:stream`, streamId);
      const stream = await streams.resumableStream(streamId, () => echo(text, input.delayMs ?? 0));
      return await pipe(stream, res);
    }
    const resume = pathname.match(/^\/api\/chat\/([^/]+)\/stream$/);
    if (req.method === "GET" && resume) {
      const streamId = await store.get(`chat:${resume[1]}:stream`);
      const stream = streamId ? await streams.resumeExistingStream(streamId) : null;
      if (!stream) {
        res.writeHead(204);
        return res.end();
      }
      return await pipe(stream, res);
    }
    if (req.method === "GET" && pathname === "/api/history") return await history(searchParams, res);
    res.writeHead(404);
    res.end();
  } catch (e) {
    res.writeHead(500);
    res.end(String(e?.stack ?? e));
  }
});
server.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("ready"));
