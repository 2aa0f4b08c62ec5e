// The AI SDK's own assembly of UI message stream chunks (readUIMessageStream), for
// tests/server/test_chat_assemble.py to compare flarebase's MessageAssembler with.
//
// stdin: a JSON list of chunk lists; stdout: a JSON list of the final messages.
import { readUIMessageStream } from "ai";

const input = JSON.parse(await new Response(process.stdin).text());
const out = [];
for (const chunks of input) {
  const stream = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  let last = null;
  for await (const message of readUIMessageStream({ stream })) last = message;
  out.push(last);
}
process.stdout.write(JSON.stringify(out));
