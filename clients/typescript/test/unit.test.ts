// Client behaviour without the stack: retries, Retry-After, timeouts, error mapping.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";

import { MemoryApiError, MemoryClient, parseRetryAfter, publishMemoryEvent, RedisClient } from "../src/index.js";

type Step = { status: number; body?: unknown; headers?: Record<string, string>; hang?: boolean };

let server: http.Server;
let baseUrl = "";
let script: Step[] = [];
const seen: { method: string; url: string; key: string | undefined; body: string }[] = [];

before(async () => {
  server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", key: req.headers["x-api-key"] as string | undefined, body });
      const step = script.shift() ?? { status: 200, body: { ok: true } };
      if (step.hang) return; // never answer
      res.writeHead(step.status, { "Content-Type": "application/json", ...(step.headers ?? {}) });
      res.end(step.body === undefined ? "" : typeof step.body === "string" ? step.body : JSON.stringify(step.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

function client(extra: Partial<ConstructorParameters<typeof MemoryClient>[0]> = {}) {
  const sleeps: number[] = [];
  const c = new MemoryClient({
    baseUrl,
    apiKey: "k-1",
    retryBaseMs: 1,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...extra,
  });
  return { c, sleeps };
}

describe("MemoryClient", () => {
  it("sends the key and JSON, returns the parsed body", async () => {
    seen.length = 0;
    script = [{ status: 200, body: { results: [], took_ms: 1 } }];
    const { c } = client();
    const out = await c.search({ query: "q", user_id: "u1", top_k: 3 });
    assert.deepEqual(out, { results: [], took_ms: 1 });
    assert.equal(seen[0]?.key, "k-1");
    assert.equal(seen[0]?.url, "/search");
    assert.deepEqual(JSON.parse(seen[0]?.body ?? ""), { query: "q", user_id: "u1", top_k: 3 });
  });

  it("retries 429 honouring Retry-After, then succeeds", async () => {
    script = [
      { status: 429, body: { error: { code: "rate_limited", message: "slow down" } }, headers: { "Retry-After": "2" } },
      { status: 503, body: { error: { code: "service_unavailable", message: "db" } } },
      { status: 200, body: { context: "", token_count: 0, memory_ids: [], truncated: false } },
    ];
    const { c, sleeps } = client();
    const out = await c.context({ query: "q", user_id: "u1" });
    assert.equal(out.token_count, 0);
    assert.equal(sleeps[0], 2000);
    assert.equal(sleeps.length, 2);
  });

  it("gives up after maxRetries with the last error", async () => {
    script = Array.from({ length: 5 }, () => ({
      status: 503,
      body: { error: { code: "service_unavailable", message: "database unavailable" } },
      headers: { "Retry-After": "1" },
    }));
    const { c, sleeps } = client({ maxRetries: 2 });
    await assert.rejects(c.health(), (error: unknown) => {
      assert.ok(error instanceof MemoryApiError);
      assert.equal(error.status, 503);
      assert.equal(error.code, "service_unavailable");
      assert.equal(error.retryAfter, 1);
      assert.match(error.message, /GET \/health failed: HTTP 503 service_unavailable: database unavailable/);
      return true;
    });
    assert.deepEqual(sleeps, [1000, 1000]);
    script = [];
  });

  it("does not wait out a long Retry-After (daily quota): throws at once", async () => {
    script = [{ status: 429, body: { error: { code: "quota_exceeded", message: "daily" } }, headers: { "Retry-After": "3600" } }];
    const { c, sleeps } = client();
    await assert.rejects(c.ingest({ content: "x", content_type: "fact", source_type: "t", user_id: "u" }), {
      name: "MemoryApiError",
      code: "quota_exceeded",
      status: 429,
    });
    assert.equal(sleeps.length, 0);
  });

  it("does not retry client errors and keeps the API's code and message", async () => {
    script = [{ status: 422, body: { error: { code: "validation_error", message: "top_k must be 1..100" } } }];
    const { c, sleeps } = client();
    await assert.rejects(c.search({ query: "q", user_id: "u", top_k: 0 }), (error: unknown) => {
      assert.ok(error instanceof MemoryApiError);
      assert.equal(error.status, 422);
      assert.equal(error.code, "validation_error");
      assert.equal(error.message, "POST /search failed: HTTP 422 validation_error: top_k must be 1..100");
      assert.equal(error.retryable, false);
      return true;
    });
    assert.equal(sleeps.length, 0);
  });

  it("maps a non-JSON error body", async () => {
    script = [{ status: 502, body: "Bad Gateway" }];
    const { c } = client();
    await assert.rejects(c.health(), { code: "http_502", status: 502 });
  });

  it("times out a request that never answers (AbortController)", async () => {
    script = [{ status: 200, hang: true }, { status: 200, hang: true }];
    const { c } = client({ timeoutMs: 100, maxRetries: 1 });
    const started = Date.now();
    await assert.rejects(c.health(), { code: "timeout", status: 0 });
    assert.ok(Date.now() - started < 2000);
    server.closeAllConnections();
  });

  it("reports a network error when nothing listens", async () => {
    const c = new MemoryClient({ baseUrl: "http://127.0.0.1:9", apiKey: "k", maxRetries: 0 });
    await assert.rejects(c.health(), { code: "network_error", status: 0 });
  });

  it("lets the caller abort", async () => {
    script = [{ status: 200, hang: true }];
    const { c } = client({ timeoutMs: 5000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(c.health(controller.signal), { code: "aborted" });
    server.closeAllConnections();
  });
});

describe("helpers", () => {
  it("parses Retry-After seconds and dates", () => {
    assert.equal(parseRetryAfter("3"), 3);
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter("soon"), undefined);
    const now = Date.parse("2025-01-01T00:00:00Z");
    assert.equal(parseRetryAfter("Wed, 01 Jan 2025 00:00:05 GMT", now), 5);
  });

  it("validates events before publishing", async () => {
    const redis = new RedisClient("redis://127.0.0.1:9");
    await assert.rejects(publishMemoryEvent(redis, { event_type: "m", content: "", user_id: "u" }), TypeError);
    await assert.rejects(
      publishMemoryEvent(redis, { event_type: "m", content: "x", user_id: "u", metadata: [] as unknown as Record<string, unknown> }),
      /metadata/,
    );
    await assert.rejects(
      publishMemoryEvent(redis, { event_type: "m", content: "x", user_id: "u" }, { retries: 0 }),
      { name: "RedisConnectionError" },
    );
    redis.close();
  });
});
