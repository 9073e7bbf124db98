// The client's Redis (RESP over node:net) has no place in a browser: the console never
// publishes events. These stand in for its exports and refuse to be used.
export class RedisConnectionError extends Error {}
export class RedisReplyError extends Error {}
export class RedisClient {
  constructor() {
    throw new RedisConnectionError("Redis is not available in the browser");
  }
}
