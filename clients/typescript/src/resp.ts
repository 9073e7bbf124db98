// A minimal Redis client (RESP2 over net.Socket): enough for XADD and PUBLISH, no dependencies.
// One connection, commands pipelined in order, replies matched FIFO.

import net from "node:net";
import tls from "node:tls";

export type RespValue = string | number | null | RespValue[] | RedisReplyError;

export class RedisReplyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RedisReplyError";
  }
}

export class RedisConnectionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "RedisConnectionError";
  }
}

interface Pending {
  resolve: (value: RespValue) => void;
  reject: (error: Error) => void;
}

export interface RedisOptions {
  /** Connect and per-command timeout in ms (default 5000). */
  timeoutMs?: number;
}

function encode(args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const buf = typeof arg === "string" ? Buffer.from(arg, "utf8") : arg;
    parts.push(Buffer.from(`$${buf.length}\r\n`), buf, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

/** Parses one reply from `buf` at `offset`; returns undefined when more bytes are needed. */
function parse(buf: Buffer, offset: number): { value: RespValue; next: number } | undefined {
  if (offset >= buf.length) return undefined;
  const end = buf.indexOf("\r\n", offset);
  if (end < 0) return undefined;
  const type = String.fromCharCode(buf[offset] as number);
  const line = buf.toString("utf8", offset + 1, end);
  switch (type) {
    case "+":
      return { value: line, next: end + 2 };
    case "-":
      return { value: new RedisReplyError(line), next: end + 2 };
    case ":":
      return { value: Number(line), next: end + 2 };
    case "$": {
      const len = Number(line);
      if (len < 0) return { value: null, next: end + 2 };
      if (buf.length < end + 2 + len + 2) return undefined;
      return { value: buf.toString("utf8", end + 2, end + 2 + len), next: end + 2 + len + 2 };
    }
    case "*": {
      const count = Number(line);
      if (count < 0) return { value: null, next: end + 2 };
      const items: RespValue[] = [];
      let next = end + 2;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, next);
        if (!item) return undefined;
        items.push(item.value);
        next = item.next;
      }
      return { value: items, next };
    }
    default:
      throw new RedisConnectionError(`unexpected RESP type byte ${JSON.stringify(type)}`);
  }
}

export class RedisClient {
  private socket: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private buffer: Buffer = Buffer.alloc(0);
  private readonly queue: Pending[] = [];
  private readonly url: URL;
  private readonly timeoutMs: number;

  constructor(url: string, options: RedisOptions = {}) {
    this.url = new URL(url);
    if (this.url.protocol !== "redis:" && this.url.protocol !== "rediss:") {
      throw new TypeError(`unsupported Redis URL scheme ${this.url.protocol} (use redis:// or rediss://)`);
    }
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  /** Sends one command; resolves with the reply, rejects with RedisReplyError for `-ERR ...`. */
  async command(...args: (string | Buffer)[]): Promise<RespValue> {
    const socket = await this.connect();
    return this.send(socket, args);
  }

  close(): void {
    const socket = this.socket;
    this.socket = undefined;
    this.connecting = undefined;
    socket?.end();
    socket?.destroy();
    this.failAll(new RedisConnectionError("connection closed"));
  }

  private send(socket: net.Socket, args: (string | Buffer)[]): Promise<RespValue> {
    return new Promise<RespValue>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A reply that never came leaves the stream out of step: drop the connection.
        this.destroy(new RedisConnectionError(`Redis command ${String(args[0])} timed out after ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.queue.push({
        resolve: (value) => {
          clearTimeout(timer);
          if (value instanceof RedisReplyError) reject(value);
          else resolve(value);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      socket.write(encode(args));
    });
  }

  private connect(): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
    if (this.connecting) return this.connecting;
    const host = this.url.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1";
    const port = Number(this.url.port || 6379);
    this.connecting = new Promise<net.Socket>((resolve, reject) => {
      const onError = (error: Error) => {
        this.connecting = undefined;
        reject(new RedisConnectionError(`cannot connect to Redis at ${host}:${port}: ${error.message}`, { cause: error }));
      };
      const socket =
        this.url.protocol === "rediss:"
          ? tls.connect({ host, port, servername: host })
          : net.createConnection({ host, port });
      socket.setNoDelay(true);
      socket.setTimeout(this.timeoutMs, () => {
        socket.destroy(new Error(`no answer within ${this.timeoutMs} ms`));
      });
      socket.once("error", onError);
      socket.once(this.url.protocol === "rediss:" ? "secureConnect" : "connect", () => {
        socket.off("error", onError);
        socket.setTimeout(0);
        this.buffer = Buffer.alloc(0);
        socket.on("data", (chunk: Buffer) => this.onData(chunk));
        socket.on("error", (error) => this.destroy(new RedisConnectionError(`Redis connection error: ${error.message}`, { cause: error })));
        socket.on("close", () => this.destroy(new RedisConnectionError("Redis connection closed")));
        this.socket = socket;
        this.handshake(socket).then(
          () => {
            this.connecting = undefined;
            resolve(socket);
          },
          (error: Error) => {
            this.connecting = undefined;
            this.destroy(error);
            reject(error);
          },
        );
      });
    });
    return this.connecting;
  }

  private async handshake(socket: net.Socket): Promise<void> {
    const user = decodeURIComponent(this.url.username);
    const password = decodeURIComponent(this.url.password);
    if (password) await this.send(socket, user ? ["AUTH", user, password] : ["AUTH", password]);
    const db = this.url.pathname.replace(/^\//, "");
    if (db && db !== "0") await this.send(socket, ["SELECT", db]);
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    let offset = 0;
    for (;;) {
      let parsed;
      try {
        parsed = parse(this.buffer, offset);
      } catch (error) {
        this.destroy(error as Error);
        return;
      }
      if (!parsed) break;
      offset = parsed.next;
      this.queue.shift()?.resolve(parsed.value);
    }
    this.buffer = this.buffer.subarray(offset);
  }

  private destroy(error: Error): void {
    const socket = this.socket;
    this.socket = undefined;
    socket?.destroy();
    this.failAll(error);
  }

  private failAll(error: Error): void {
    while (this.queue.length) this.queue.shift()?.reject(error);
  }
}
