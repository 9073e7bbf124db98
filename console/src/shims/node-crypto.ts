// The browser's own crypto.randomUUID, under the name the client imports from node:crypto.
export function randomUUID(): string {
  return globalThis.crypto.randomUUID();
}
