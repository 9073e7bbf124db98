// The signed-in key lives in this tab's sessionStorage only: never in a URL, a cookie or a log.
// Closing the tab or signing out forgets it.

const KEY = "coda-memory.api_key";
const USER = "coda-memory.user_id";

export interface Session {
  apiKey: string;
  /** Whose memories the views show; empty until one is picked (the service key acts for anyone). */
  userId: string;
}

export function load(): Session | null {
  const apiKey = sessionStorage.getItem(KEY);
  return apiKey ? { apiKey, userId: sessionStorage.getItem(USER) ?? "" } : null;
}

export function save(session: Session): void {
  sessionStorage.setItem(KEY, session.apiKey);
  sessionStorage.setItem(USER, session.userId);
}

export function forget(): void {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(USER);
}
