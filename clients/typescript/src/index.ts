// coda-memory client for the coda agent.
//
//   const skill = new MemorySkill({ baseUrl, apiKey, userId, redisUrl });
//   const context = await skill.getContext("what does the user like?", 1500);
//   await skill.publishMemoryEvent({ event_type: "message", content: "I love jazz", user_id });
//
// REST calls carry X-API-Key, time out (AbortController), and retry 429/503 (and network
// failures) honouring Retry-After. Failures throw MemoryApiError with status, code and message.

import { randomUUID } from "node:crypto";
import { RedisClient } from "./resp.js";

export { RedisClient, RedisConnectionError, RedisReplyError } from "./resp.js";

// ------------------------------------------------------------------------------------------
// Types of the API contract: openapi.json at the repository root. tests/unit/test_ts_types.py
// checks every interface named there against the document's schema of the same name (field
// names, which are optional, and JSON types), so these cannot drift from the server.

export type ContentType = "conversation" | "fact" | "preference" | "event" | (string & {});

export interface IngestRequest {
  content: string;
  content_type: ContentType;
  source_type: string;
  user_id: string;
  context_id?: string;
  source_id?: string;
  tags?: string[];
  metadata?: Record<string, unknown>;
  importance?: number;
  confidence?: number;
  /** ISO 8601; not in the future. */
  created_at?: string;
  /** ISO 8601, in the future: from then on the memory is invisible everywhere. */
  expires_at?: string;
  /** Ids (at most 10) of the user's memories this one replaces: they leave search, context and lists. */
  supersedes?: string[];
  /** At most 10 relations from this memory to others of the user. */
  relations?: RelationSpec[];
  /** Answer with `similar`: up to 3 live memories close to this one. */
  return_similar?: boolean;
}

export type RelationType = "extends" | "derived_from" | "relates_to";

export interface RelationSpec {
  type: RelationType;
  target_id: string;
}

/** source_id --type--> target_id; `supersedes` is listed (newer supersedes older), never posted. */
export interface Relation {
  source_id: string;
  type: RelationType | "supersedes";
  target_id: string;
  created_at: string;
}

export interface RelationList {
  /** Outgoing and incoming, oldest first. */
  relations: Relation[];
}

export interface SimilarMemory {
  memory_id: string;
  content: string;
  similarity: number;
}

export interface IngestResult {
  memory_id?: string;
  status: "created" | "duplicate" | "rejected";
  error?: ApiErrorBody["error"];
  event_id?: string;
  /** Only with return_similar: closest first. */
  similar?: SimilarMemory[] | null;
}

export interface BatchResponse {
  results: IngestResult[];
}

export interface SearchFilters {
  content_types?: ContentType[];
  tags?: string[];
  min_importance?: number;
  context_id?: string;
  created_after?: string;
  created_before?: string;
  /** A JSON object the memory's metadata must contain. */
  metadata?: Record<string, unknown>;
  source_types?: string[];
}

export interface SearchRequest {
  query: string;
  user_id: string;
  top_k?: number;
  filters?: SearchFilters;
  /** Leave out results whose cosine similarity to the query is below this (0..1). */
  min_relevance?: number;
  /** Also rank archived memories (an exact scan of them). */
  include_archived?: boolean;
  /** Also rank superseded memories (an exact scan of them). */
  include_superseded?: boolean;
  /** Give each result the parts of its score (`explain`). */
  explain?: boolean;
}

/** The fields of a memory that every answer showing one has (search results too). */
export interface MemoryView {
  id: string;
  content: string;
  content_type: ContentType;
  source_type: string;
  source_id: string | null;
  context_id: string | null;
  tags: string[];
  importance: number;
  created_at: string;
  metadata: Record<string, unknown>;
}

/** A memory as GET /memory/{id}, GET /memories and PATCH /memory/{id} return it. */
export interface Memory extends MemoryView {
  user_id: string;
  confidence: number;
  content_hash: string;
  ingested_at: string;
  accessed_at: string | null;
  access_count: number;
  archived: boolean;
  archived_at: string | null;
  version: number;
  updated_at: string | null;
  expires_at: string | null;
  /** The memory that replaces this one (then out of search, context and lists). */
  superseded_by: string | null;
  superseded_at: string | null;
}

export interface ListMemoriesOptions {
  /** 1..100 (default 20). */
  limit?: number;
  /** next_cursor of the previous page. */
  cursor?: string;
  content_type?: ContentType;
  tag?: string;
  context_id?: string;
  created_after?: string;
  created_before?: string;
  include_archived?: boolean;
  include_superseded?: boolean;
}

export interface MemoryPage {
  memories: Memory[];
  /** null on the last page. */
  next_cursor: string | null;
}

/** PATCH /memory/{id}: only the fields given change; context_id and expires_at may be null. */
export interface MemoryPatch {
  content?: string;
  content_type?: ContentType;
  tags?: string[];
  importance?: number;
  confidence?: number;
  metadata?: Record<string, unknown>;
  context_id?: string | null;
  expires_at?: string | null;
  /** false restores an archived memory (history "restored"); true archives it. */
  archived?: boolean;
  /** null reinstates a superseded memory (history "reinstated"); an id: superseded by that memory. */
  superseded_by?: string | null;
}

export interface HistoryEntry {
  version: number;
  action: "created" | "imported" | "updated" | "deleted" | "expired" | "restored" | "superseded" | "reinstated" | (string & {});
  at: string;
  actor: string;
  changes: Record<string, { old: unknown; new: unknown }>;
}

export interface MemoryHistory {
  memory_id: string;
  history: HistoryEntry[];
}

/** One line of the export / import format. */
export interface ExportedMemory {
  id?: string;
  content: string;
  content_type: ContentType;
  source_type?: string;
  source_id?: string | null;
  context_id?: string | null;
  event_id?: string | null;
  tags?: string[];
  metadata?: Record<string, unknown>;
  importance?: number;
  confidence?: number;
  created_at?: string;
  expires_at?: string | null;
  archived?: boolean;
  superseded_by?: string | null;
  superseded_at?: string | null;
  /** The memory's relations, both directions, supersession included; restored once both ends exist. */
  links?: Relation[];
  supersedes?: string[];
  relations?: RelationSpec[];
  /** 384 floats; only with `embeddings: true`. */
  embedding?: number[];
}

export interface ExportPage {
  memories: ExportedMemory[];
  /** Cursor of the next page (X-Next-Cursor); undefined on the last page. */
  nextCursor: string | undefined;
}

export interface ImportResult {
  created: number;
  duplicate: number;
  rejected: { line: number; error: { code: string; message: string } }[];
}

export interface DeleteResult {
  memory_id: string;
  status: "deleted" | "erased";
}

export interface EraseResult {
  user_id: string;
  erased: number;
  status: "erased";
}

export interface SearchResult extends MemoryView {
  similarity: number;
  relevance: number;
  /** true only with include_archived. */
  archived: boolean;
  /** Set only with include_superseded. */
  superseded_by: string | null;
  /** With explain: relevance = w_sim * match + w_imp * importance + w_rec * recency + neighbour (match includes length_factor). */
  explain?: ScoreParts | null;
}

export interface ScoreParts {
  cosine: number;
  lexical: number;
  match: number;
  importance: number;
  recency: number;
  /** Lift from one of the best hits this memory sits next to (same context_id, close in time). */
  neighbour: number;
  /** What a long memory's match was multiplied by (1 for a memory of at most MEMORY_LONG_MEMORY_LEXEMES distinct words). */
  length_factor: number;
  relevance: number;
}

export interface SearchResponse {
  results: SearchResult[];
  took_ms: number;
}

export interface ContextRequest {
  query: string;
  user_id: string;
  max_tokens?: number;
  top_k?: number;
  filters?: SearchFilters;
  /** Default: the service's MEMORY_CONTEXT_MIN_RELEVANCE (0.2); 0 keeps every candidate. */
  min_relevance?: number;
  include_archived?: boolean;
  include_superseded?: boolean;
  /** Add the memories the selected ones extend or are derived_from, after them, within max_tokens. */
  expand_relations?: boolean;
}

export interface StateCounts {
  live: number;
  archived: number;
  superseded: number;
  expired: number;
  deleted: number;
}

export interface RecallBuckets {
  never: number;
  one_to_four: number;
  five_plus: number;
}

export interface TagCount {
  tag: string;
  count: number;
}

export interface DayCount {
  day: string;
  count: number;
}

export interface QuotaUse {
  memory_count: number;
  max_memories: number;
  daily_ingestions: number;
  max_daily_ingestions: number;
}

export interface BusyUser {
  user_id: string;
  live: number;
  /** live memories recalled at least once */
  recalled: number;
}

/** What both statistics answers hold (states, breakdowns of live memories, the last 90 days). */
export interface StatsCommon {
  counts: StateCounts;
  recall: RecallBuckets;
  archival_due: number;
  content_types: Record<string, number>;
  source_types: Record<string, number>;
  top_tags: TagCount[];
  created_per_day: DayCount[];
}

/** `GET /users/{user_id}/stats`. */
export interface UserStats extends StatsCommon {
  user_id: string;
  quota: QuotaUse;
}

/** `GET /stats` (service key only). */
export interface ServiceStats extends StatsCommon {
  users: number;
  busiest_users: BusyUser[];
}

export interface ContextResponse {
  context: string;
  token_count: number;
  memory_ids: string[];
  truncated: boolean;
}

export interface ApiErrorBody {
  error: { code: string; message: string; [key: string]: unknown };
}

/** A seed event, as published on `memory.ingest` and in the `data` field of the stream. */
export interface MemoryEvent {
  event_type: string;
  content: string;
  user_id: string;
  metadata?: Record<string, unknown>;
  content_type?: ContentType;
  source_type?: string;
  source_id?: string;
  context_id?: string;
  tags?: string[];
  importance?: number;
  created_at?: string;
  expires_at?: string;
  supersedes?: string[];
  relations?: RelationSpec[];
}

export interface ConversationTurn {
  role: "user" | "assistant" | "system" | (string & {});
  content: string;
}

// ------------------------------------------------------------------------------------------
// Errors.

export class MemoryApiError extends Error {
  /** HTTP status; 0 when no response arrived (timeout, connection refused). */
  readonly status: number;
  /** The API's error code (`validation_error`, `rate_limited`, ...), or `timeout` / `network_error`. */
  readonly code: string;
  /** Seconds the server asked us to wait (429/503), when it said. */
  readonly retryAfter: number | undefined;
  readonly method: string;
  readonly path: string;
  readonly body: unknown;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    method: string;
    path: string;
    retryAfter?: number | undefined;
    body?: unknown;
    cause?: unknown;
  }) {
    super(`${init.method} ${init.path} failed: ${init.status ? `HTTP ${init.status} ` : ""}${init.code}: ${init.message}`, {
      cause: init.cause,
    });
    this.name = "MemoryApiError";
    this.status = init.status;
    this.code = init.code;
    this.retryAfter = init.retryAfter;
    this.method = init.method;
    this.path = init.path;
    this.body = init.body;
  }

  /** True for errors worth retrying later (429, 503, timeouts, network failures). */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status === 503;
  }
}

// ------------------------------------------------------------------------------------------
// HTTP client.

export interface MemoryClientOptions {
  /** API base URL, e.g. http://127.0.0.1:3000 or https://xyz.execute-api.eu-west-1.amazonaws.com/Prod */
  baseUrl: string;
  apiKey: string;
  /** Per-attempt timeout in ms (default 10000). */
  timeoutMs?: number;
  /** Retries after the first attempt for 429/503/network errors (default 3). */
  maxRetries?: number;
  /** Backoff base when the server gives no Retry-After (default 200 ms, doubled per retry, jittered). */
  retryBaseMs?: number;
  /** Never wait longer than this between attempts, whatever Retry-After says (default 10000 ms). */
  maxRetryDelayMs?: number;
  /** Injected for tests; defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Injected for tests; defaults to setTimeout-based sleep. */
  sleep?: (ms: number) => Promise<void>;
}

/** How a request sends its body and reads its answer: `contentType` sends a string body as is;
 * `raw` returns the answer's text and headers instead of parsed JSON. */
interface RequestMode {
  raw?: boolean;
  contentType?: string;
}

interface RawResponse {
  text: string;
  headers: Headers;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Parses Retry-After (delta seconds or an HTTP date) into seconds. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, (at - now) / 1000);
}

export class MemoryClient {
  private readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly retryBaseMs: number;
  private readonly maxRetryDelayMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(options: MemoryClientOptions) {
    if (!options.baseUrl) throw new TypeError("baseUrl is required");
    if (!options.apiKey) throw new TypeError("apiKey is required");
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.apiKey = options.apiKey;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxRetries = options.maxRetries ?? 3;
    this.retryBaseMs = options.retryBaseMs ?? 200;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 10_000;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.sleep = options.sleep ?? defaultSleep;
  }

  ingest(item: IngestRequest, signal?: AbortSignal): Promise<IngestResult> {
    return this.request<IngestResult>("POST", "/ingest", item, signal);
  }

  ingestBatch(items: IngestRequest[], signal?: AbortSignal): Promise<BatchResponse> {
    return this.request("POST", "/ingest/batch", { items }, signal);
  }

  search(request: SearchRequest, signal?: AbortSignal): Promise<SearchResponse> {
    return this.request<SearchResponse>("POST", "/search", request, signal);
  }

  context(request: ContextRequest, signal?: AbortSignal): Promise<ContextResponse> {
    return this.request<ContextResponse>("POST", "/context", request, signal);
  }

  getMemory(id: string, userId: string, signal?: AbortSignal): Promise<Memory> {
    return this.request<Memory>("GET", `/memory/${encodeURIComponent(id)}?user_id=${encodeURIComponent(userId)}`, undefined, signal);
  }

  deleteMemory(id: string, userId: string, options: { hard?: boolean } = {}, signal?: AbortSignal): Promise<DeleteResult> {
    const hard = options.hard ? "&hard=true" : "";
    return this.request("DELETE", `/memory/${encodeURIComponent(id)}?user_id=${encodeURIComponent(userId)}${hard}`, undefined, signal);
  }

  eraseUser(userId: string, signal?: AbortSignal): Promise<EraseResult> {
    return this.request("DELETE", `/users/${encodeURIComponent(userId)}/memories`, undefined, signal);
  }

  /** A page of the user's memories, newest first. */
  listMemories(userId: string, options: ListMemoriesOptions = {}, signal?: AbortSignal): Promise<MemoryPage> {
    const query = new URLSearchParams({ user_id: userId });
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined && value !== null) query.set(key, String(value));
    }
    return this.request<MemoryPage>("GET", `/memories?${query}`, undefined, signal);
  }

  /** Every memory of the user, newest first, page by page. */
  async *iterateMemories(userId: string, options: Omit<ListMemoriesOptions, "cursor"> = {}): AsyncGenerator<Memory> {
    let cursor: string | undefined;
    do {
      const page = await this.listMemories(userId, { ...options, ...(cursor ? { cursor } : {}) });
      yield* page.memories;
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
  }

  /** Change some fields of a memory; returns it with its new version (409 `conflict` with
   * `error.memory_id` when the new content equals another memory of the user). */
  updateMemory(id: string, userId: string, patch: MemoryPatch, signal?: AbortSignal): Promise<Memory> {
    return this.request<Memory>("PATCH", `/memory/${encodeURIComponent(id)}?user_id=${encodeURIComponent(userId)}`, patch, signal);
  }

  memoryHistory(id: string, userId: string, signal?: AbortSignal): Promise<MemoryHistory> {
    return this.request<MemoryHistory>(
      "GET", `/memory/${encodeURIComponent(id)}/history?user_id=${encodeURIComponent(userId)}`, undefined, signal);
  }

  /** Relate a memory to another of the user's (201, or 200 when the relation existed). */
  addRelation(id: string, userId: string, relation: RelationSpec, signal?: AbortSignal): Promise<Relation> {
    return this.request<Relation>(
      "POST", `/memory/${encodeURIComponent(id)}/relations?user_id=${encodeURIComponent(userId)}`, relation, signal);
  }

  /** A memory's relations, outgoing and incoming, supersession included (type `supersedes`). */
  listRelations(id: string, userId: string, signal?: AbortSignal): Promise<RelationList> {
    return this.request<RelationList>(
      "GET", `/memory/${encodeURIComponent(id)}/relations?user_id=${encodeURIComponent(userId)}`, undefined, signal);
  }

  /** Remove one relation (supersession is undone with updateMemory(old, user, {superseded_by: null})). */
  async deleteRelation(id: string, userId: string, type: RelationType, targetId: string, signal?: AbortSignal): Promise<void> {
    await this.request<RawResponse>(
      "DELETE",
      `/memory/${encodeURIComponent(id)}/relations/${encodeURIComponent(type)}/${encodeURIComponent(targetId)}` +
        `?user_id=${encodeURIComponent(userId)}`,
      undefined, signal, { raw: true });
  }

  /** One page of the user's export (oldest first). */
  async exportUser(
    userId: string, options: { cursor?: string; embeddings?: boolean; include_superseded?: boolean } = {},
    signal?: AbortSignal,
  ): Promise<ExportPage> {
    const query = new URLSearchParams();
    if (options.cursor) query.set("cursor", options.cursor);
    if (options.embeddings) query.set("embeddings", "true");
    if (options.include_superseded) query.set("include_superseded", "true");
    const qs = query.toString() ? `?${query}` : "";
    const raw = await this.request<RawResponse>("GET", `/users/${encodeURIComponent(userId)}/export${qs}`, undefined,
      signal, { raw: true });
    const memories = raw.text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line) as ExportedMemory);
    return { memories, nextCursor: raw.headers.get("x-next-cursor") ?? undefined };
  }

  /** Every memory of the user in the export format, page by page. */
  async *exportAll(
    userId: string, options: { embeddings?: boolean; include_superseded?: boolean } = {},
  ): AsyncGenerator<ExportedMemory> {
    let cursor: string | undefined;
    do {
      const page = await this.exportUser(userId, { ...options, ...(cursor ? { cursor } : {}) });
      yield* page.memories;
      cursor = page.nextCursor;
    } while (cursor);
  }

  /** Import memories (export format; at most 500 lines and 1 MB per call: split larger sets). */
  importUser(userId: string, memories: ExportedMemory[] | string, signal?: AbortSignal): Promise<ImportResult> {
    const body = typeof memories === "string" ? memories : memories.map((m) => JSON.stringify(m)).join("\n") + "\n";
    return this.request<ImportResult>("POST", `/users/${encodeURIComponent(userId)}/import`, body, signal,
      { contentType: "application/x-ndjson" });
  }

  /** What the user's memory holds: states, types, tags, memories per day, recall, quota. */
  userStats(userId: string, signal?: AbortSignal): Promise<UserStats> {
    return this.request<UserStats>("GET", `/users/${encodeURIComponent(userId)}/stats`, undefined, signal);
  }

  /** The same over every user (service key only: 403 otherwise). */
  serviceStats(signal?: AbortSignal): Promise<ServiceStats> {
    return this.request<ServiceStats>("GET", "/stats", undefined, signal);
  }

  health(signal?: AbortSignal): Promise<Record<string, unknown>> {
    return this.request("GET", "/health", undefined, signal);
  }

  /** One API call with timeout and retries. Every route is safe to retry: reads are reads, and
   * ingest dedups the same content for the same user. */
  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal, mode: RequestMode = {}): Promise<T> {
    const pathOnly = path.split("?")[0] ?? path;
    for (let attempt = 0; ; attempt++) {
      let error: MemoryApiError;
      try {
        return await this.once<T>(method, path, pathOnly, body, signal, mode);
      } catch (caught) {
        if (!(caught instanceof MemoryApiError) || !caught.retryable || caught.code === "aborted") throw caught;
        error = caught;
      }
      if (attempt >= this.maxRetries) throw error;
      const backoff = this.retryBaseMs * 2 ** attempt * (0.5 + Math.random() / 2);
      const wait = error.retryAfter !== undefined ? error.retryAfter * 1000 : backoff;
      if (wait > this.maxRetryDelayMs && error.retryAfter !== undefined) throw error; // e.g. a daily quota
      await this.sleep(Math.min(wait, this.maxRetryDelayMs));
      if (signal?.aborted) throw error;
    }
  }

  private async once<T>(
    method: string, path: string, pathOnly: string, body: unknown, outer?: AbortSignal, mode: RequestMode = {},
  ): Promise<T> {
    const controller = new AbortController();
    const onAbort = () => controller.abort(outer?.reason);
    if (outer?.aborted) onAbort();
    outer?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(() => controller.abort(new Error("timeout")), this.timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await this.fetchImpl(this.baseUrl + path, {
        method,
        headers: {
          "X-API-Key": this.apiKey,
          Accept: mode.raw ? "application/x-ndjson, application/json" : "application/json",
          ...(body !== undefined ? { "Content-Type": mode.contentType ?? "application/json" } : {}),
        },
        body: body === undefined ? undefined : mode.contentType ? String(body) : JSON.stringify(body),
        signal: controller.signal,
      });
      text = await response.text();
    } catch (cause) {
      const timedOut = controller.signal.aborted && !outer?.aborted;
      const aborted = outer?.aborted ?? false;
      throw new MemoryApiError({
        status: 0,
        code: aborted ? "aborted" : timedOut ? "timeout" : "network_error",
        message: aborted
          ? "request aborted by caller"
          : timedOut
            ? `no response within ${this.timeoutMs} ms`
            : `cannot reach ${this.baseUrl}: ${(cause as Error)?.message ?? String(cause)}`,
        method,
        path: pathOnly,
        cause,
      });
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    }
    let parsed: unknown = undefined;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (response.ok && mode.raw) {
      return { text, headers: response.headers } as T;
    }
    if (response.ok) {
      if (parsed === undefined) {
        throw new MemoryApiError({
          status: response.status,
          code: "invalid_response",
          message: "response is not JSON",
          method,
          path: pathOnly,
          body: text.slice(0, 500),
        });
      }
      return parsed as T;
    }
    const apiError = (parsed as ApiErrorBody | undefined)?.error;
    // API Gateway's own answers (missing key, throttling) are {"message": "..."}.
    const gatewayMessage = (parsed as { message?: unknown } | undefined)?.message;
    throw new MemoryApiError({
      status: response.status,
      code: typeof apiError?.code === "string" ? apiError.code : `http_${response.status}`,
      message:
        typeof apiError?.message === "string"
          ? apiError.message
          : typeof gatewayMessage === "string"
            ? gatewayMessage
            : (text.slice(0, 200) || response.statusText || "request failed"),
      method,
      path: pathOnly,
      retryAfter: parseRetryAfter(response.headers.get("retry-after")),
      body: parsed ?? text.slice(0, 500),
    });
  }
}

// ------------------------------------------------------------------------------------------
// Publishing events to Redis (the subscriber forwards them to ingest).

export const MEMORY_STREAM = "memory.ingest.stream";
export const MEMORY_CHANNEL = "memory.ingest";

export interface PublishOptions {
  /** Idempotency key: the same event_id for the same user is stored once. Default: a random UUID,
   * generated once per call, so retries of this call cannot store it twice. */
  eventId?: string;
  /** Also PUBLISH on the seed's pub/sub channel (best-effort; default false: the stream is
   * durable and the subscriber bridges the channel into it anyway). */
  alsoChannel?: boolean;
  stream?: string;
  channel?: string;
  /** Approximate MAXLEN trim of the stream (default: none). */
  maxLen?: number;
  /** Retries on connection failures (default 2). */
  retries?: number;
}

export interface PublishResult {
  eventId: string;
  /** Stream entry id, e.g. "1700000000000-0". */
  entryId: string;
  /** Subscribers that received the channel message, when alsoChannel. */
  channelReceivers?: number;
}

function checkEvent(event: MemoryEvent): void {
  for (const field of ["event_type", "content", "user_id"] as const) {
    if (typeof event?.[field] !== "string" || event[field].length === 0) {
      throw new TypeError(`memory event needs a non-empty string ${field}`);
    }
  }
  if (event.metadata !== undefined && (typeof event.metadata !== "object" || event.metadata === null || Array.isArray(event.metadata))) {
    throw new TypeError("memory event metadata must be an object");
  }
}

/** XADD one seed event to `memory.ingest.stream` (field `data` = JSON, plus `event_id`). */
export async function publishMemoryEvent(
  redis: RedisClient,
  event: MemoryEvent,
  options: PublishOptions = {},
): Promise<PublishResult> {
  checkEvent(event);
  const eventId = options.eventId ?? randomUUID();
  const data = JSON.stringify(event);
  const args: string[] = ["XADD", options.stream ?? MEMORY_STREAM];
  if (options.maxLen) args.push("MAXLEN", "~", String(options.maxLen));
  args.push("*", "data", data, "event_id", eventId);
  const retries = options.retries ?? 2;
  for (let attempt = 0; ; attempt++) {
    try {
      const entryId = String(await redis.command(...args));
      const result: PublishResult = { eventId, entryId };
      if (options.alsoChannel) {
        result.channelReceivers = Number(await redis.command("PUBLISH", options.channel ?? MEMORY_CHANNEL, data));
      }
      return result;
    } catch (error) {
      // A retried XADD may append the entry twice; the event_id makes the second a duplicate.
      if ((error as Error).name !== "RedisConnectionError" || attempt >= retries) throw error;
      await defaultSleep(100 * 2 ** attempt);
    }
  }
}

// ------------------------------------------------------------------------------------------
// The skill the coda agent uses.

export interface MemorySkillOptions extends MemoryClientOptions {
  /** The user whose memories this skill reads and writes. */
  userId: string;
  /** Redis URL for publishMemoryEvent (e.g. redis://127.0.0.1:6379/0). */
  redisUrl?: string;
  /** Results for search (default 10) and candidates for context (default 20). */
  topK?: number;
  contextTopK?: number;
  /** Turns of conversation history folded into the enrichment query (default 3). */
  historyTurns?: number;
  /** enrichContext returns "" instead of throwing when the memory service fails (default true):
   * a memory outage should not break the conversation. */
  enrichFailOpen?: boolean;
  /** Called with errors swallowed by enrichContext. */
  onError?: (error: unknown) => void;
}

export class MemorySkill {
  readonly client: MemoryClient;
  readonly userId: string;
  private readonly options: MemorySkillOptions;
  private redis: RedisClient | undefined;

  constructor(options: MemorySkillOptions) {
    if (!options.userId) throw new TypeError("userId is required");
    this.client = new MemoryClient(options);
    this.userId = options.userId;
    this.options = options;
  }

  /** Relevant memories for `query`, assembled by the API within `maxTokens`. */
  async getContext(query: string, maxTokens = 2000, filters?: SearchFilters): Promise<ContextResponse> {
    return this.client.context({
      query,
      user_id: this.userId,
      max_tokens: maxTokens,
      top_k: this.options.contextTopK ?? 20,
      ...(filters ? { filters } : {}),
    });
  }

  /** Ranked memories for `query` (filters as in the API contract). */
  async search(query: string, filters: SearchFilters & { top_k?: number } = {}): Promise<SearchResult[]> {
    const { top_k, ...rest } = filters;
    const response = await this.client.search({
      query,
      user_id: this.userId,
      top_k: top_k ?? this.options.topK ?? 10,
      filters: rest,
    });
    return response.results;
  }

  /** A system-prompt block of memories relevant to the user's message and the recent turns;
   * "" when nothing relevant is stored. */
  async enrichContext(userMessage: string, conversationHistory: ConversationTurn[] = [], maxTokens = 1000): Promise<string> {
    const turns = this.options.historyTurns ?? 3;
    const recent = conversationHistory
      .slice(-turns)
      .map((turn) => turn.content)
      .filter((content) => typeof content === "string" && content.trim());
    const query = [...recent, userMessage].join("\n").slice(-4000);
    try {
      const context = await this.getContext(query, maxTokens);
      if (!context.context.trim()) return "";
      return `Relevant memories about the user (most relevant first):\n${context.context}`;
    } catch (error) {
      if (this.options.enrichFailOpen === false) throw error;
      this.options.onError?.(error);
      return "";
    }
  }

  /** Publishes a conversation event to the durable stream (the subscriber ingests it). */
  async publishMemoryEvent(
    event: Omit<MemoryEvent, "user_id"> & { user_id?: string },
    options: PublishOptions = {},
  ): Promise<PublishResult> {
    if (!this.options.redisUrl) throw new TypeError("redisUrl is required to publish events");
    this.redis ??= new RedisClient(this.options.redisUrl);
    return publishMemoryEvent(this.redis, { ...event, user_id: event.user_id ?? this.userId } as MemoryEvent, options);
  }

  close(): void {
    this.redis?.close();
    this.redis = undefined;
  }
}
