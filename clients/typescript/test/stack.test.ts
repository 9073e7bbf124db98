// Against the local stack (python -m local.run, started by scripts/test-with-stack.mjs):
// the REST API on MEMORY_API_URL and the subscriber reading Redis at MEMORY_REDIS_URL.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, it } from "node:test";

import { type ExportedMemory, MemoryApiError, MemoryClient, MemorySkill, RedisClient } from "../src/index.js";

const baseUrl = process.env.MEMORY_API_URL;
const apiKey = process.env.MEMORY_API_KEY;
const redisUrl = process.env.MEMORY_REDIS_URL;
if (!baseUrl || !apiKey || !redisUrl) {
  // Not a skip: these tests exist to run against the stack.
  throw new Error("MEMORY_API_URL, MEMORY_API_KEY and MEMORY_REDIS_URL must be set (run `npm test`)");
}

const userId = `ts-${randomUUID().slice(0, 8)}`;
const skill = new MemorySkill({ baseUrl, apiKey, userId, redisUrl, timeoutMs: 30_000 });

after(() => skill.close());

async function eventually<T>(fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("MemorySkill against the local stack", () => {
  it("reports health", async () => {
    const health = await skill.client.health();
    assert.ok(health);
  });

  it("stores through the API, then search / getContext / enrichContext find it", async () => {
    const created = await skill.client.ingest({
      content: "The user's favourite instrument is the cello; they practise every morning.",
      content_type: "preference",
      source_type: "conversation",
      user_id: userId,
      tags: ["music"],
      importance: 0.8,
    });
    assert.equal(created.status, "created");
    assert.ok(created.memory_id);
    const again = await skill.client.ingest({
      content: "The user's favourite instrument is the cello; they practise every morning.",
      content_type: "preference",
      source_type: "conversation",
      user_id: userId,
    });
    assert.equal(again.status, "duplicate");
    assert.equal(again.memory_id, created.memory_id);

    const results = await skill.search("which instrument does the user play?", { tags: ["music"], top_k: 5 });
    assert.equal(results[0]?.id, created.memory_id);
    assert.equal(typeof results[0]?.relevance, "number");
    assert.equal(typeof results[0]?.similarity, "number");

    const none = await skill.search("cello", { content_types: ["event"] });
    assert.deepEqual(none, []);

    const context = await skill.getContext("music practice", 500);
    assert.ok(context.memory_ids.includes(created.memory_id!));
    assert.match(context.context, /cello/);
    assert.ok(context.token_count > 0 && context.token_count <= 500);

    const enriched = await skill.enrichContext("Any idea what I could play tonight?", [
      { role: "user", content: "I want to relax after work." },
      { role: "assistant", content: "Maybe some music?" },
    ]);
    assert.match(enriched, /^Relevant memories/);
    assert.match(enriched, /cello/);

    const memory = await skill.client.getMemory(created.memory_id!, userId);
    assert.equal(memory.id, created.memory_id);
  });

  it("publishMemoryEvent: XADD to the stream, the subscriber stores it once", async () => {
    const content = `Published via the stream ${randomUUID()}: the user is moving to Lisbon in May.`;
    const first = await skill.publishMemoryEvent({ event_type: "message", content, metadata: { from: "ts-test" } });
    assert.match(first.entryId, /^\d+-\d+$/);
    const found = await eventually(async () => {
      const results = await skill.search("where is the user moving?", { top_k: 10 });
      return results.find((r) => r.content === content);
    });
    assert.ok(found.id);
    // Republishing with the same event id (a producer retry) does not store a second row.
    await skill.publishMemoryEvent({ event_type: "message", content: content + " (retry)" }, { eventId: first.eventId });
    const redis = new RedisClient(redisUrl);
    try {
      await eventually(async () => {
        const groups = (await redis.command("XINFO", "GROUPS", "memory.ingest.stream")) as unknown[][];
        const group = groups.find((g) => g[1] === "memory-subscriber") ?? [];
        const pending = Number(group[group.indexOf("pending") + 1]);
        const last = String(group[group.indexOf("last-delivered-id") + 1]);
        const [lastAdded] = ((await redis.command("XREVRANGE", "memory.ingest.stream", "+", "-", "COUNT", "1")) as unknown[][])[0] ?? [];
        return pending === 0 && last === lastAdded ? true : undefined;
      });
    } finally {
      redis.close();
    }
    const results = await skill.search("the user is moving to Lisbon", { top_k: 20 });
    assert.equal(results.filter((r) => r.content.startsWith(content)).length, 1);
  });

  it("publishMemoryEvent on the channel as well (seed compatibility)", async () => {
    const content = `Channel event ${randomUUID()}: the user adopted a cat named Pixel.`;
    const result = await skill.publishMemoryEvent({ event_type: "message", content }, { alsoChannel: true });
    assert.ok((result.channelReceivers ?? 0) >= 1, "the subscriber listens on memory.ingest");
    const found = await eventually(async () => {
      const results = await skill.search("what is the name of the user's cat?", { top_k: 10 });
      return results.find((r) => r.content === content);
    });
    assert.ok(found);
  });

  it("errors say what went wrong", async () => {
    await assert.rejects(skill.search("", {}), (error: unknown) => {
      assert.ok(error instanceof MemoryApiError);
      assert.ok(error.status === 400 || error.status === 422, `status ${error.status}`);
      assert.ok(error.code.length > 0 && error.message.includes("/search"));
      return true;
    });
    const wrongKey = new MemoryClient({ baseUrl, apiKey: "wrong-key", maxRetries: 0 });
    // The gateway's key check answers with the contract's 401 (as the template maps API_KEY).
    await assert.rejects(wrongKey.search({ query: "x", user_id: userId }), (error: unknown) => {
      assert.ok(error instanceof MemoryApiError);
      assert.equal(error.status, 401);
      assert.equal(error.code, "unauthorized");
      assert.equal(error.retryable, false);
      return true;
    });
    await assert.rejects(skill.client.getMemory(randomUUID(), userId), { status: 404, code: "not_found" });
  });
});

describe("memory lifecycle against the local stack", () => {
  const client = new MemoryClient({ baseUrl, apiKey, timeoutMs: 30_000 });
  const owner = `ts-life-${randomUUID().slice(0, 8)}`;

  it("lists pages, updates with history, answers 409 naming the duplicate", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await client.ingest({
        content: `Lifecycle memory number ${i}: the user owns ${i + 2} bicycles`,
        content_type: "fact", source_type: "ts", user_id: owner, created_at: `2024-01-0${i + 1}T00:00:00Z`,
      });
      ids.push(r.memory_id!);
    }
    const first = await client.listMemories(owner, { limit: 2 });
    assert.deepEqual(first.memories.map((m) => m.id), [ids[2], ids[1]]);
    assert.ok(first.next_cursor);
    const second = await client.listMemories(owner, { limit: 2, cursor: first.next_cursor! });
    assert.deepEqual(second.memories.map((m) => m.id), [ids[0]]);
    assert.equal(second.next_cursor, null);
    const all: string[] = [];
    for await (const m of client.iterateMemories(owner, { limit: 1 })) all.push(m.id);
    assert.deepEqual(all, [...ids].reverse());

    const updated = await client.updateMemory(ids[0]!, owner, { importance: 0.9, tags: ["bikes"], expires_at: null });
    assert.equal(updated.version, 2);
    assert.deepEqual(updated.tags, ["bikes"]);
    const history = await client.memoryHistory(ids[0]!, owner);
    assert.deepEqual(history.history.map((h) => h.action), ["created", "updated"]);
    assert.deepEqual(history.history[1]!.changes.tags!.new, ["bikes"]);

    await assert.rejects(client.updateMemory(ids[1]!, owner, { content: "Lifecycle memory number 2: the user owns 4 bicycles" }),
      (error: unknown) => {
        assert.ok(error instanceof MemoryApiError);
        assert.equal(error.status, 409);
        assert.equal((error.body as { error: { memory_id: string } }).error.memory_id, ids[2]);
        return true;
      });
  });

  it("filters by metadata and source type, and drops weak matches", async () => {
    await client.ingest({ content: "Deploy notes for project apollo", content_type: "fact", source_type: "slack",
      user_id: owner, metadata: { project: "apollo" } });
    const found = await client.search({ query: "deploy notes", user_id: owner,
      filters: { metadata: { project: "apollo" }, source_types: ["slack"] } });
    assert.deepEqual(found.results.map((r) => r.content), ["Deploy notes for project apollo"]);
    const strict = await client.search({ query: "deploy notes", user_id: owner, min_relevance: 0.99 });
    assert.deepEqual(strict.results, []);
  });

  it("reads a user's statistics and why a result ranked where it did", async () => {
    const user = `ts-stats-${randomUUID().slice(0, 8)}`;
    const client = new MemoryClient({ baseUrl, apiKey, timeoutMs: 30_000 });
    for (const content of ["Ana plays the violin", "Ana bakes sourdough on Sundays"]) {
      await client.ingest({ content, content_type: "fact", source_type: "test", user_id: user, tags: ["ana"] });
    }
    const stats = await client.userStats(user);
    assert.equal(stats.counts.live, 2);
    assert.deepEqual(stats.top_tags, [{ tag: "ana", count: 2 }]);
    assert.equal(stats.quota.memory_count, 2);
    const all = await client.serviceStats();
    assert.ok(all.users >= 1 && all.counts.live >= 2);

    const found = await client.search({ query: "violin", user_id: user, top_k: 1, explain: true });
    const parts = found.results[0]?.explain;
    assert.ok(parts, "explain: true gives the score parts");
    assert.equal(typeof parts.cosine, "number");
    assert.ok(Math.abs(parts.relevance - found.results[0]!.relevance) < 1e-5);
  });

  it("exports and imports NDJSON", async () => {
    const exported: ExportedMemory[] = [];
    for await (const m of client.exportAll(owner)) exported.push(m);
    assert.ok(exported.length >= 4);
    const page = await client.exportUser(owner, { embeddings: true });
    assert.equal(page.memories[0]!.embedding!.length, 384);
    const target = `${owner}-copy`;
    const lines = exported.map(({ id: _id, ...rest }) => rest);
    const result = await client.importUser(target, lines);
    assert.deepEqual(result, { created: exported.length, duplicate: 0, rejected: [] });
    const again = await client.importUser(target, lines.map((l) => JSON.stringify(l)).join("\n") + "\n{broken\n");
    assert.equal(again.created, 0);
    assert.equal(again.duplicate, exported.length);
    assert.deepEqual(again.rejected.map((r) => r.line), [exported.length + 1]);
  });
});
