// A line-oriented remote control for the official MCP TypeScript SDK client, so the Python test
// suite can run the same scenario through this client as through the Python SDK's.
//
//   node driver.mjs http URL [HEADER=VALUE ...]     streamable HTTP
//   node driver.mjs stdio COMMAND [ARG ...]         stdio (spawns COMMAND with this environment)
//
// After connecting it prints one JSON line {"ok": true, "result": {"server": ..., "protocolVersion": ...}};
// then for every JSON line read from stdin, {"op": "list"} or {"op": "call", "name", "arguments"},
// it prints one JSON line: {"ok": true, "result": <what the SDK returned>} or, when the SDK threw,
// {"ok": false, "error": {"name", "code", "message"}}.
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

function transportFrom([kind, target, ...rest]) {
  if (kind === "http") {
    const headers = Object.fromEntries(rest.map((h) => [h.slice(0, h.indexOf("=")), h.slice(h.indexOf("=") + 1)]));
    return new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
  }
  if (kind === "stdio") {
    return new StdioClientTransport({ command: target, args: rest, env: { ...process.env }, stderr: "inherit" });
  }
  throw new Error(`unknown transport ${kind}: use http or stdio`);
}

const say = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const failure = (err) => ({ ok: false, error: { name: err?.name ?? "Error", code: err?.code ?? null, message: String(err?.message ?? err) } });

const client = new Client({ name: "coda-memory-ts-check", version: "1.0.0" });
try {
  await client.connect(transportFrom(process.argv.slice(2)));
  say({ ok: true, result: { server: client.getServerVersion(), instructions: client.getInstructions() ?? null } });
} catch (err) {
  say(failure(err));
  process.exit(1);
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const request = JSON.parse(line);
  try {
    if (request.op === "list") say({ ok: true, result: await client.listTools() });
    else if (request.op === "call") say({ ok: true, result: await client.callTool({ name: request.name, arguments: request.arguments }) });
    else say({ ok: false, error: { name: "UsageError", code: null, message: `unknown op ${request.op}` } });
  } catch (err) {
    say(failure(err));
  }
}
await client.close();
