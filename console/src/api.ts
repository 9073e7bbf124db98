// The project's own TypeScript client, pointed at the origin that served the console.
import { MemoryApiError, MemoryClient } from "../../clients/typescript/src/index.ts";
import type { Session } from "./session.ts";

export { MemoryApiError };
export type {
  Memory, MemoryPage, MemoryHistory, SearchResponse, SearchResult, ContextResponse, UserStats, ServiceStats,
  ListMemoriesOptions, ImportResult,
} from "../../clients/typescript/src/index.ts";

export function client(session: Session): MemoryClient {
  // one retry: a console shows a 429 or 503 to the person (with its Retry-After) rather than hang
  return new MemoryClient({ baseUrl: location.origin, apiKey: session.apiKey, maxRetries: 1, timeoutMs: 30_000 });
}

/** What to tell the person about a failed call, by status. */
export function describe(error: unknown): string {
  if (error instanceof MemoryApiError) {
    const wait = error.retryAfter ? ` Try again in ${Math.ceil(error.retryAfter)} s.` : "";
    switch (error.status) {
      case 401:
      case 403:
        return error.code === "forbidden"
          ? `This key may not act for that user (403): ${error.message}`
          : "The API key was not accepted (401/403). Sign out and sign in with a valid key.";
      case 404:
        return `Not found (404): ${error.message}`;
      case 409:
        return `Conflict (409): ${error.message}`;
      case 422:
        return `Invalid input (422): ${error.message}`;
      case 429:
        return `Too many requests (429).${wait}`;
      case 503:
        return `The service is unavailable (503).${wait}`;
      case 0:
        return `No answer from the service (${error.code}).`;
      default:
        return `Error ${error.status}: ${error.message}`;
    }
  }
  return error instanceof Error ? error.message : String(error);
}
