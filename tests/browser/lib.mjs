// Helpers shared by the browser tests (run.mjs, qz.mjs): timing and
// checks, free ports, page servers, and the daemon as a child process.

import { spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "..", "..");
export const BIN = process.env.POSBRIDGE_BIN || path.join(REPO, "target", "debug", "posbridge");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const SHOT_DIR = path.join(REPO, "target", "browser");
export const VERBOSE = !!process.env.BROWSER_TEST_VERBOSE;

export const WAIT_MS = 10_000; // one condition inside a test

export const started = Date.now();
export const log = (...a) => console.log(`[${((Date.now() - started) / 1000).toFixed(2)}s]`, ...a);


// ---------------------------------------------------------------- helpers

export class TestFailure extends Error {}

/** At most `lines` lines of `text` (Playwright errors carry the whole browser log). */
export function clip(text, lines = 40) {
  const all = String(text).split("\n");
  return all.length > lines ? [...all.slice(0, lines), `… (${all.length - lines} more lines)`].join("\n") : String(text);
}
export function check(cond, msg) {
  if (!cond) throw new TestFailure(msg);
}

export function withTimeout(promise, ms, what) {
  let t;
  const timer = new Promise((_, reject) => {
    t = setTimeout(() => reject(new TestFailure(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timer]).finally(() => clearTimeout(t));
}

/** Polls `fn` until it returns a truthy value; throws with `what` (a string, or an async function giving one) after `ms`. */
export async function waitFor(fn, what, ms = WAIT_MS, every = 50) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const w = typeof what === "function" ? await what().catch((e) => `? (${e.message})`) : what;
      throw new TestFailure(`timed out after ${ms} ms waiting for ${w}` + (last ? ` (last error: ${last.message})` : ""));
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

/** A port that was free a moment ago (bind 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Serves `html()` at `/`, and `routes[path](req, res)` at its other paths. */
export function startPageServer(html, routes = {}) {
  return new Promise((resolve, reject) => {
    const server = http.createServer((req, res) => {
      const route = routes[req.url.split("?")[0]];
      if (route) {
        route(req, res);
      } else if (req.url === "/" || req.url.startsWith("/?")) {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
        res.end(html());
      } else {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found");
      }
    });
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

export function closeServer(server) {
  return new Promise((resolve) => {
    if (!server) return resolve();
    server.closeAllConnections?.();
    server.close(() => resolve());
  });
}

// ---------------------------------------------------------------- tests

/**
 * A test runner: each test gets `timeoutMs`, its result goes into `results`, and
 * a failure is logged with its reason. `stopped()` true means the run was
 * interrupted (cleanup pulled the browser away): a failure then is not a result.
 */
export function testRunner(results, timeoutMs, stopped = () => false) {
  return async function runTest(name, fn) {
    const t0 = Date.now();
    try {
      await withTimeout(fn(), timeoutMs, name);
      results.push({ name, ok: true });
      log(`PASS ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      if (stopped()) return;
      results.push({ name, ok: false, error: e });
      const msg = e instanceof TestFailure ? e.message : clip(e.stack || String(e), 12);
      log(`FAIL ${name} (${Date.now() - t0} ms)\n    ${msg.replace(/\n/g, "\n    ")}`);
    }
  };
}

// ---------------------------------------------------------------- daemon

export function startDaemon(configPath) {
  const child = spawn(BIN, ["run", "--config", configPath], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info", NO_COLOR: "1" },
  });
  const d = { child, output: "", exited: null };
  const collect = (chunk) => {
    const s = chunk.toString();
    d.output += s;
    if (d.output.length > 200_000) d.output = d.output.slice(-100_000);
    if (VERBOSE) process.stderr.write(s.replace(/^(?=.)/gm, "  daemon| "));
  };
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  child.on("exit", (code, signal) => {
    d.exited = { code, signal };
  });
  child.on("error", (e) => {
    d.exited = { code: null, signal: null, error: e.message };
  });
  return d;
}

export async function stopDaemon(d) {
  if (!d || d.exited) return;
  const gone = new Promise((r) => d.child.once("exit", r));
  d.child.kill("SIGTERM");
  const t = setTimeout(() => {
    if (!d.exited) {
      log(`daemon did not stop within 5 s of SIGTERM; sending SIGKILL`);
      d.child.kill("SIGKILL");
    }
  }, 5000);
  await gone;
  clearTimeout(t);
}

export function daemonTail(d, lines = 30) {
  return d.output.trimEnd().split("\n").slice(-lines).map((l) => "  daemon| " + l).join("\n");
}

export async function waitHealthy(d, port) {
  const url = `http://127.0.0.1:${port}/v1/health`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (d.exited) return false;
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) return true;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new TestFailure(`daemon did not answer 200 on ${url} within 15 s\n${daemonTail(d)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

