#!/usr/bin/env node
// Starts the local stack (python -m local.run) on free ports with its own database directory,
// runs the compiled tests with node's test runner against it, and stops it. If the stack does
// not come up, the run fails (it never skips).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, "..");
const repo = path.resolve(pkg, "..", "..");
const venvPython = path.join(repo, ".venv", "bin", "python");
const python = process.env.PYTHON ?? (existsSync(venvPython) ? venvPython : "python3");
const startTimeoutMs = Number(process.env.STACK_START_TIMEOUT_MS ?? 180_000);

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startStack() {
  const [apiPort, invokePort] = [await freePort(), await freePort()];
  const apiKey = `ts-${randomBytes(18).toString("hex")}`;
  const env = {
    ...process.env,
    MEMORY_API_KEY: apiKey,
    LOCAL_PG_DIR: process.env.LOCAL_PG_DIR ?? path.join(repo, ".local", "pg-ts"),
    LOCAL_SCHEDULER: "0",
    LOCAL_SUBSCRIBER: "1",
  };
  for (const name of ["REDIS_URL", "DATABASE_URL", "DATABASE_ADMIN_URL"]) delete env[name];
  const child = spawn(python, ["-m", "local.run", "--port", String(apiPort), "--invoke-port", String(invokePort)], {
    cwd: repo,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`local stack not ready within ${startTimeoutMs} ms`)), startTimeoutMs);
    const onData = (chunk) => {
      output += chunk;
      const redis = output.match(/Redis\s+(redis:\/\/\S+)/);
      const api = output.match(/API Gateway \(REST\)\s+(http:\/\/\S+)/);
      if (redis && api && output.includes("Ctrl-C stops everything")) {
        clearTimeout(timer);
        resolve({ apiUrl: api[1], redisUrl: redis[1], apiKey });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`local stack exited with code ${code} before it was ready`));
    });
  });
  try {
    return { child, stack: await ready, output: () => output };
  } catch (error) {
    child.kill("SIGKILL");
    process.stderr.write(output.slice(-4000));
    throw error;
  }
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

const testDir = path.join(pkg, "dist", "test");
const files = readdirSync(testDir).filter((f) => f.endsWith(".test.js")).map((f) => path.join(testDir, f));

let started;
try {
  started = await startStack();
} catch (error) {
  console.error(`cannot start the local stack: ${error.message}`);
  process.exit(1);
}
const { child, stack } = started;
console.log(`local stack up: API ${stack.apiUrl}, Redis ${stack.redisUrl}`);
let code = 1;
try {
  code = await new Promise((resolve) => {
    const run = spawn(process.execPath, ["--test", ...files], {
      cwd: pkg,
      stdio: "inherit",
      env: { ...process.env, MEMORY_API_URL: stack.apiUrl, MEMORY_API_KEY: stack.apiKey, MEMORY_REDIS_URL: stack.redisUrl },
    });
    run.once("exit", (c) => resolve(c ?? 1));
  });
} finally {
  await stop(child);
}
if (code !== 0) process.stderr.write(started.output().slice(-3000));
process.exit(code);
