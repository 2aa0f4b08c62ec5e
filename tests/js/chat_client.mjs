// The real Vercel AI SDK client (npm `ai`: DefaultChatTransport, AbstractChat,
// readUIMessageStream) against a running flarebase server, for tests/server/test_chat_client.py.
//
// stdin: {"base": "http://127.0.0.1:PORT", "token": "<session token>", "scenario": ..., ...}
// stdout: a JSON object describing what the client saw.
//
// Scenarios:
//   send               {chatId, text}: sendMessages + readUIMessageStream to the end
//   abort-and-resume   {chatId, text, abortAfter}: Chat.sendMessage, chat.stop() after
//                      `abortAfter` chunks, then chat.resumeStream()
//   resume             {chatId, messages}: a Chat holding `messages` calls resumeStream()
//   tail               {chatId, after}: reconnectToStream with Last-Event-ID = after
//   stop               {chatId, text, stopAfter}: sendMessages, and after `stopAfter` chunks
//                      a second connection POSTs /api/chat/{id}/stop; the first stream is
//                      read to its end
import {
  AbstractChat,
  DefaultChatTransport,
  readUIMessageStream,
} from "ai";

class State {
  constructor(messages = []) {
    this.messages = messages;
    this.status = "ready";
    this.error = undefined;
  }
  pushMessage = (message) => {
    this.messages = this.messages.concat(message);
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  };
  snapshot = (value) => structuredClone(value);
}

class Chat extends AbstractChat {
  constructor({ messages, ...init }) {
    super({ ...init, state: new State(messages) });
  }
}

// A transport that reports every chunk it parses (to stop or abort after a few).
class CountingTransport extends DefaultChatTransport {
  constructor(options, onChunk) {
    super(options);
    this.onChunk = onChunk;
  }
  processResponseStream(stream) {
    const onChunk = this.onChunk;
    return super.processResponseStream(stream).pipeThrough(
      new TransformStream({
        transform(chunk, controller) {
          controller.enqueue(chunk);
          onChunk?.(chunk);
        },
      }),
    );
  }
}

function transportOptions(input, extra = {}) {
  return {
    api: `${input.base}/api/chat`,
    headers: { Authorization: `Bearer ${input.token}`, ...extra },
  };
}

function userMessage(text, id = `u-${Math.random().toString(36).slice(2)}`) {
  return { id, role: "user", parts: [{ type: "text", text }] };
}

function textOf(message) {
  return (message?.parts ?? []).filter((p) => p.type === "text").map((p) => p.text).join("");
}

function summary(chat) {
  return {
    status: chat.status,
    error: chat.error ? String(chat.error.message ?? chat.error) : null,
    messages: chat.messages.map((m) => ({ id: m.id, role: m.role, text: textOf(m), parts: m.parts })),
  };
}

async function assemble(stream) {
  // readUIMessageStream: the SDK's own assembly of a message from chunks.
  let last = null;
  let error = null;
  for await (const message of readUIMessageStream({
    stream,
    onError: (e) => {
      error = String(e?.message ?? e);
    },
  })) {
    last = message;
  }
  return { message: last, text: textOf(last), error };
}

async function send(input) {
  const chunks = [];
  const transport = new CountingTransport(transportOptions(input), (c) => chunks.push(c.type));
  const stream = await transport.sendMessages({
    chatId: input.chatId,
    messages: [userMessage(input.text)],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  return { ...(await assemble(stream)), chunkTypes: chunks };
}

async function abortAndResume(input) {
  let seen = 0;
  let chat;
  const transport = new CountingTransport(transportOptions(input), () => {
    seen += 1;
    if (seen === input.abortAfter) chat.stop(); // the browser goes away mid-stream
  });
  chat = new Chat({ id: input.chatId, transport, messages: [] });
  await chat.sendMessage({ text: input.text });
  const afterAbort = summary(chat);
  seen = -1e9; // count no more
  await chat.resumeStream();
  return { afterAbort, afterResume: summary(chat) };
}

async function resume(input) {
  const transport = new DefaultChatTransport(transportOptions(input));
  const chat = new Chat({ id: input.chatId, transport, messages: input.messages ?? [] });
  await chat.resumeStream();
  return summary(chat);
}

async function tail(input) {
  // A client that asks only for what it has not seen (resumeStreamIsReplay: false).
  const transport = new DefaultChatTransport({
    ...transportOptions(input, { "Last-Event-ID": String(input.after) }),
    resumeStreamIsReplay: false,
  });
  const chunks = [];
  const stream = await transport.reconnectToStream({ chatId: input.chatId });
  if (stream === null) return { status: 204 };
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  return { chunks };
}

async function stop(input) {
  const chunks = [];
  let stopped = null;
  let stopRequest = null;
  const transport = new CountingTransport(transportOptions(input), (c) => {
    chunks.push(c);
    if (chunks.length === input.stopAfter) {
      // another connection (another tab, another server instance) asks to stop
      stopRequest = fetch(`${input.base}/api/chat/${input.chatId}/stop`, {
        method: "POST",
        headers: { Authorization: `Bearer ${input.token}` },
      }).then(async (r) => {
        stopped = { status: r.status, body: await r.json() };
      });
    }
  });
  const stream = await transport.sendMessages({
    chatId: input.chatId,
    messages: [userMessage(input.text)],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  const assembled = await assemble(stream);
  await stopRequest;
  return { ...assembled, chunkTypes: chunks.map((c) => c.type), stopped };
}

const scenarios = { send, "abort-and-resume": abortAndResume, resume, tail, stop };

let raw = "";
for await (const piece of process.stdin) raw += piece;
const input = JSON.parse(raw);
try {
  const result = await scenarios[input.scenario](input);
  process.stdout.write(JSON.stringify({ ok: true, ...result }));
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e?.stack ?? e) }));
}
