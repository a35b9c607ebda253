#!/usr/bin/env node
// QZ Tray pages through posbridge: the real qz-tray.js (npm, 2.2.6 and
// 2.3.0, unmodified) in real Chromium against the real daemon, printing to
// a fake network printer that checks every byte and plays paper-out.
//
//   node tests/browser/qz.mjs          (after scripts/install-test-deps.sh)
//
// Env as run.mjs. Prints one closing line "N passed, M failed".

import { createSign } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import {
  BIN, CHROMIUM, HERE, REPO, VERBOSE, WAIT_MS, started, log, TestFailure, clip, check, waitFor,
  freePort, startPageServer, closeServer, startDaemon, stopDaemon, daemonTail, waitHealthy, testRunner,
} from "./lib.mjs";

const VERSIONS = { "2.2.6": "qz-tray-2.2/qz-tray.js", "2.3.0": "qz-tray/qz-tray.js" };
const TEST_TIMEOUT_MS = 30_000;
const FIXTURES = path.join(REPO, "tests", "fixtures", "qz");
const KEYS = {
  site: readFileSync(path.join(FIXTURES, "site-key.pem"), "utf8"),
  other: readFileSync(path.join(FIXTURES, "other-key.pem"), "utf8"),
};

// GB18030 of "\x1b@会员 王芳 余额 ¥350.00\n" (Python: .encode("gb18030")); ¥ is four bytes.
const RECEIPT_TEXT = "\x1b@会员 王芳 余额 ¥350.00\n";
const RECEIPT_GB18030 = Buffer.from("1b40bbe1d4b120cdf5b7bc20d3e0b6ee20813084363335302e30300a", "hex");
const CUT = Buffer.from("1d564200", "hex");
const KICK = Buffer.from("1b700019fa", "hex");
const SIGNED_TEXT = "签名小票 OK\n";
const SIGNED_GB18030 = Buffer.from("c7a9c3fbd0a1c6b1204f4b0a", "hex");

/** DLE EOT 1, 2, 4 answers: ready, and paper out (as tests/common/printer.rs). */
const NORMAL = [0x12, 0x12, 0x12];
const PAPER_OUT = [0x12, 0x32, 0x72];

// ---------------------------------------------------------------- a network receipt printer

/** Captures what it is sent; answers `DLE EOT n` from `answers` and keeps those out of the capture. */
function fakePrinter() {
  const p = { data: Buffer.alloc(0), answers: NORMAL, queries: 0 };
  p.server = net.createServer((sock) => {
    let state = 0;
    sock.on("data", (chunk) => {
      const keep = [];
      const reply = [];
      for (const b of chunk) {
        if (state === 0 && b === 0x10) state = 1;
        else if (state === 0) keep.push(b);
        else if (state === 1 && b === 0x04) state = 2;
        else if (state === 1) {
          keep.push(0x10, b);
          state = 0;
        } else {
          const i = { 1: 0, 2: 1, 4: 2 }[b];
          if (i !== undefined) {
            reply.push(p.answers[i]);
            p.queries++;
          }
          state = 0;
        }
      }
      p.data = Buffer.concat([p.data, Buffer.from(keep)]);
      if (reply.length) sock.write(Buffer.from(reply));
    });
    sock.on("error", () => {});
  });
  return new Promise((resolve) => p.server.listen(0, "127.0.0.1", () => resolve(p)));
}

// ---------------------------------------------------------------- pages

/** A POS page that loads one qz-tray.js version; the tests drive `qz` in it. */
const qzPage = (version) => `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>QZ page ${version}</title></head>
<body><h1>A POS page written for QZ Tray (qz-tray.js ${version})</h1>
<script src="/qz-tray-${version}.js"></script>
<script>window.__events = []; window.__key = "site";</script>
</body></html>`;

function pageRoutes() {
  const routes = {};
  for (const [v, file] of Object.entries(VERSIONS)) {
    const js = readFileSync(path.join(HERE, "node_modules", file));
    routes[`/qz-tray-${v}.js`] = (_req, res) => {
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(js);
    };
    routes[`/qz-${v}.html`] = (_req, res) => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
      res.end(qzPage(v));
    };
  }
  // The site's own signing endpoint, as QZ's docs have sites write one.
  routes["/cert"] = (_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end(readFileSync(path.join(FIXTURES, "site-cert.pem")));
  };
  routes["/sign"] = (req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const key = new URL(req.url, "http://x").searchParams.get("key") === "other" ? KEYS.other : KEYS.site;
      const sig = createSign("RSA-SHA512").update(body).sign(key, "base64");
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(sig);
    });
  };
  return routes;
}

/** In the page: qz.websocket.connect to the daemon's QZ port, anonymous or signed. */
async function connect(page, { host = "localhost", port, signed = false }) {
  return page.evaluate(async ({ host, port, signed }) => {
    if (signed) {
      qz.security.setCertificatePromise((resolve, reject) => fetch("/cert").then((r) => r.text()).then(resolve, reject));
      qz.security.setSignatureAlgorithm("SHA512");
      qz.security.setSignaturePromise((toSign) => (resolve, reject) =>
        fetch("/sign?key=" + window.__key, { method: "POST", body: toSign }).then((r) => r.text()).then(resolve, reject));
    } else {
      qz.security.setCertificatePromise((resolve) => resolve());
      qz.security.setSignaturePromise(() => (resolve) => resolve());
    }
    try {
      await qz.websocket.connect({ host, port: { insecure: [port], secure: [] }, usingSecure: false, keepAlive: 1 });
      return { ok: true, version: await qz.api.getVersion() };
    } catch (e) {
      return { ok: false, error: String(e && e.message || e) };
    }
  }, { host, port, signed });
}

/** In the page: print the receipt (text, cut, kick) to the printer qz finds as XP-80C. */
async function printReceipt(page, text) {
  return page.evaluate(async (text) => {
    try {
      const found = await qz.printers.find("XP-80C");
      const config = qz.configs.create(found, { encoding: "GB18030" });
      await qz.print(config, [
        text,
        { type: "raw", format: "command", flavor: "hex", data: "1D564200" },
        { type: "raw", format: "command", flavor: "base64", data: "G3AAGfo=" },
      ]);
      const net = await qz.websocket.getNetworkInfo();
      return { ok: true, found, all: await qz.printers.find(), net };
    } catch (e) {
      return { ok: false, error: String(e && e.message || e) };
    }
  }, text);
}

// ---------------------------------------------------------------- daemons

function config({ port, qzPort, origin, printer, stateDir, certificate }) {
  return `# written by tests/browser/qz.mjs
[store]
id = "qz-browser-test"

[api]
listen = "127.0.0.1:${port}"
allowed_origins = ["${origin}"]

[storage]
dir = "${stateDir}"

[qz]
enabled = true
listen = "127.0.0.1:${qzPort}"
${certificate ? `certificate = "${certificate}"` : ""}

[[device]]
id = "receipt"
driver = "escpos"
transport = "tcp"
address = "127.0.0.1:${printer.server.address().port}"
qz_name = "XP-80C"
poll_ms = 500
`;
}

async function daemon(ctx, name, opts) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const qzPort = await freePort();
    const cfg = path.join(ctx.tmp, `${name}.toml`);
    writeFileSync(cfg, config({ port, qzPort, ...opts, stateDir: path.join(ctx.tmp, name) }));
    const d = startDaemon(cfg);
    if (await waitHealthy(d, port)) {
      const health = await (await fetch(`http://127.0.0.1:${port}/v1/health`)).json();
      check(health.qz?.urls?.[0] === `ws://127.0.0.1:${qzPort}/`, `health.qz: ${JSON.stringify(health.qz)}`);
      return { d, port, qzPort };
    }
    if (!/address already in use|AddrInUse|os error 98/i.test(d.output) || attempt >= 3) {
      throw new TestFailure(`daemon ${name} exited during start-up\n${daemonTail(d)}`);
    }
  }
}

// ---------------------------------------------------------------- tests

const results = [];
const runTest = testRunner(results, TEST_TIMEOUT_MS);

const has = (buf, part) => buf.indexOf(part) !== -1;

async function newPage(ctx, url, label) {
  const page = await ctx.context.newPage();
  page.__console = [];
  page.on("console", (m) => {
    page.__console.push(m.text());
    if (VERBOSE) log(`${label} console.${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => log(`${label} page error: ${e.message}`));
  const resp = await page.goto(url);
  check(resp && resp.status() === 200, `GET ${url}: ${resp && resp.status()}`);
  return page;
}

async function main(ctx) {
  check(existsSync(BIN), `daemon binary not found at ${BIN}: run \`cargo build\` first, or set POSBRIDGE_BIN`);
  check(existsSync(CHROMIUM), `${CHROMIUM} not found: run scripts/install-test-deps.sh`);
  for (const file of Object.values(VERSIONS)) {
    check(existsSync(path.join(HERE, "node_modules", file)), `node_modules/${file} missing: run scripts/install-test-deps.sh`);
  }
  const { chromium } = await import("playwright-core");
  ctx.tmp = mkdtempSync(path.join(os.tmpdir(), "posbridge-qz-"));
  ctx.printer = await fakePrinter();
  ctx.signedPrinter = await fakePrinter();
  ctx.allowed = await startPageServer(() => "", pageRoutes());
  ctx.foreign = await startPageServer(() => "", pageRoutes());
  const origin = `http://localhost:${ctx.allowed.address().port}`;
  const foreign = `http://localhost:${ctx.foreign.address().port}`;
  ctx.plain = await daemon(ctx, "anonymous", { origin, printer: ctx.printer });
  ctx.signed = await daemon(ctx, "signed", {
    origin,
    printer: ctx.signedPrinter,
    certificate: path.join(FIXTURES, "site-cert.pem"),
  });
  log(`daemons up: QZ on ${ctx.plain.qzPort} (anonymous) and ${ctx.signed.qzPort} (signed); page ${origin}`);
  ctx.browser = await chromium.launch({
    executablePath: CHROMIUM,
    // localhost.qz.io is QZ's public DNS name for 127.0.0.1; here the browser maps it.
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--host-resolver-rules=MAP localhost.qz.io 127.0.0.1"],
    timeout: 30_000,
  });
  ctx.context = await ctx.browser.newContext();
  ctx.context.setDefaultTimeout(WAIT_MS);

  for (const v of Object.keys(VERSIONS)) {
    await runTest(`A ${v}: an allowed page finds the aliased printer and prints GB18030 with a cut and a kick`, async () => {
      const page = await newPage(ctx, `${origin}/qz-${v}.html`, `qz ${v}`);
      const before = ctx.printer.data.length;
      const c = await connect(page, { port: ctx.plain.qzPort });
      check(c.ok, `qz.websocket.connect rejected: ${c.error}`);
      check(c.version === "2.2.6", `getVersion: ${c.version}`);
      const r = await printReceipt(page, RECEIPT_TEXT);
      check(r.ok, `qz.print rejected: ${r.error}`);
      check(r.found === "XP-80C" && JSON.stringify(r.all) === '["XP-80C"]', `find: ${JSON.stringify(r)}`);
      check(r.net?.ipAddress === "127.0.0.1", `getNetworkInfo: ${JSON.stringify(r.net)}`);
      const want = Buffer.concat([RECEIPT_GB18030, CUT, KICK]);
      await waitFor(() => has(ctx.printer.data.subarray(before), want),
        () => `the printer to get ${want.toString("hex")}; it has ${ctx.printer.data.subarray(before).toString("hex")}`);
      await page.evaluate(() => qz.websocket.disconnect());
      await page.close();
    });

    await runTest(`B ${v}: status listeners get PAPER_OUT when the printer runs out`, async () => {
      const page = await newPage(ctx, `${origin}/qz-${v}.html`, `qz ${v}`);
      check((await connect(page, { port: ctx.plain.qzPort })).ok, "connect");
      await page.evaluate(async () => {
        qz.printers.setPrinterCallbacks((e) => window.__events.push(e));
        await qz.printers.startListening("XP-80C");
        await qz.printers.getStatus();
      });
      await waitFor(() => page.evaluate(() => window.__events.some((e) => e.statusText === "OK")),
        async () => `an OK status event; got ${JSON.stringify(await page.evaluate(() => window.__events))}`);
      ctx.printer.answers = PAPER_OUT;
      try {
        const ev = await waitFor(() => page.evaluate(() => window.__events.find((e) => e.statusText === "PAPER_OUT")),
          async () => `a PAPER_OUT status event; got ${JSON.stringify(await page.evaluate(() => window.__events))}`);
        check(ev.printerName === "XP-80C" && ev.eventType === "PRINTER" && ev.severity === "WARN", `event: ${JSON.stringify(ev)}`);
      } finally {
        ctx.printer.answers = NORMAL;
      }
      await page.evaluate(() => qz.websocket.disconnect());
      await page.close();
    });
  }

  await runTest("C: a page from a foreign origin cannot connect", async () => {
    const page = await newPage(ctx, `${foreign}/qz-2.3.0.html`, "foreign");
    const before = ctx.printer.data.length;
    const c = await connect(page, { port: ctx.plain.qzPort });
    check(!c.ok, `the foreign page connected`);
    check(/Unable to establish connection/.test(c.error), `error: ${c.error}`);
    const why = page.__console.find((t) => /WebSocket/.test(t) && /403/.test(t));
    check(why, `expected a refused handshake (403) in the console: ${JSON.stringify(page.__console)}`);
    check(ctx.printer.data.length === before, "the printer got bytes");
    await page.close();
  });

  await runTest("D: the Host localhost.qz.io is refused (DNS rebinding), localhost is not", async () => {
    const page = await newPage(ctx, `${origin}/qz-2.3.0.html`, "qz.io");
    const c = await connect(page, { host: "localhost.qz.io", port: ctx.plain.qzPort });
    check(!c.ok, "connected through localhost.qz.io");
    const why = page.__console.find((t) => /localhost\.qz\.io/.test(t) && /403/.test(t));
    check(why, `expected a 403 for ws://localhost.qz.io in the console: ${JSON.stringify(page.__console)}`);
    check((await connect(page, { port: ctx.plain.qzPort })).ok, "the same page then connects to localhost");
    await page.evaluate(() => qz.websocket.disconnect());
    await page.close();
  });

  for (const v of Object.keys(VERSIONS)) {
    await runTest(`E ${v}: signed mode prints with the site's signatures and refuses forged ones`, async () => {
      const page = await newPage(ctx, `${origin}/qz-${v}.html`, `signed ${v}`);
      const before = ctx.signedPrinter.data.length;
      const c = await connect(page, { port: ctx.signed.qzPort, signed: true });
      check(c.ok, `signed connect rejected: ${c.error}`);
      const r = await printReceipt(page, SIGNED_TEXT);
      check(r.ok, `a signed print was rejected: ${r.error}`);
      const want = Buffer.concat([SIGNED_GB18030, CUT, KICK]);
      await waitFor(() => has(ctx.signedPrinter.data.subarray(before), want), "the signed receipt at the printer");
      const printed = ctx.signedPrinter.data.length;
      await page.evaluate(() => (window.__key = "other"));
      const f = await printReceipt(page, SIGNED_TEXT);
      check(!f.ok && /invalid signature/.test(f.error), `a forged signature: ${JSON.stringify(f)}`);
      await new Promise((r) => setTimeout(r, 700));
      check(ctx.signedPrinter.data.length === printed, "a forged call printed");
      await page.evaluate(() => qz.websocket.disconnect());
      await page.close();
    });
  }

  await runTest("F: signed mode refuses an anonymous page with a reason it can log", async () => {
    const page = await newPage(ctx, `${origin}/qz-2.3.0.html`, "anonymous on signed");
    const c = await connect(page, { port: ctx.signed.qzPort });
    check(!c.ok && /qz\.certificate/.test(c.error), `anonymous connect to the signed daemon: ${JSON.stringify(c)}`);
    await page.close();
  });
}

const ctx = {};
async function cleanup() {
  await ctx.browser?.close().catch(() => {});
  await stopDaemon(ctx.plain?.d).catch(() => {});
  await stopDaemon(ctx.signed?.d).catch(() => {});
  for (const s of [ctx.allowed, ctx.foreign]) await closeServer(s);
  for (const p of [ctx.printer, ctx.signedPrinter]) p?.server.close();
  if (ctx.tmp) rmSync(ctx.tmp, { recursive: true, force: true });
}
process.on("exit", () => {
  for (const d of [ctx.plain?.d, ctx.signed?.d]) if (d && !d.exited) d.child.kill("SIGKILL");
});

let setupError = null;
try {
  await main(ctx);
} catch (e) {
  setupError = e;
  log(`SETUP FAILED: ${e instanceof TestFailure ? e.message : clip(e.stack || String(e))}`);
} finally {
  if (results.some((r) => !r.ok) || setupError) {
    for (const d of [ctx.plain?.d, ctx.signed?.d]) if (d) console.log(daemonTail(d));
  }
  await cleanup();
}
const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed + (setupError ? 1 : 0);
log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
