#!/usr/bin/env node
// End-to-end browser test of posbridge: a real daemon, real Chromium pages on
// an allowed and a foreign origin, the daemon's own status page.
//
//   node tests/browser/run.mjs          (after scripts/install-test-deps.sh)
//
// Env: POSBRIDGE_BIN (default <repo>/target/debug/posbridge),
//      CHROMIUM (default /usr/bin/chromium), BROWSER_TEST_VERBOSE=1 (daemon log).
// Prints one closing line "N passed, M failed"; exits 0 only when M is 0.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  BIN, CHROMIUM, SHOT_DIR, VERBOSE, WAIT_MS, started, log, TestFailure, clip, check, waitFor, freePort,
  startPageServer, closeServer, startDaemon, stopDaemon, daemonTail, waitHealthy, testRunner,
} from "./lib.mjs";

const DEVICE = "scan-1";
const STORE = "browser-test";
const PHONE = "phone-1";
const PHONE2 = "phone-2";
const TESTS = 7; // A, B, C, D, E, E2, F
const TEST_TIMEOUT_MS = 20_000;

// ---------------------------------------------------------------- test page servers

/** The page both test origins serve: one WebSocket to the daemon, logged in window.__log. */
function testPage(daemonPort) {
  const wsUrl = `ws://127.0.0.1:${daemonPort}/v1/events?types=code.scanned`;
  return `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>posbridge browser test</title></head>
<body><h1>posbridge browser test</h1><pre id="out"></pre>
<script>
"use strict";
window.__log = { opened: false, errored: false, closeCode: null, events: [], raw: [] };
const ws = new WebSocket(${JSON.stringify(wsUrl)});
ws.onopen = () => { window.__log.opened = true; };
ws.onerror = () => { window.__log.errored = true; };
ws.onmessage = (m) => {
  window.__log.raw.push(String(m.data));
  try { window.__log.events.push(JSON.parse(m.data)); } catch (e) { window.__log.events.push({ unparsable: String(m.data) }); }
};
ws.onclose = (c) => { window.__log.closeCode = c.code; };
</script></body></html>`;
}

function configToml({ port, allowedOrigin, stateDir, brokerPort }) {
  return `# written by tests/browser/run.mjs
[store]
id = "${STORE}"

[uplink]
url = "mqtt://127.0.0.1:${brokerPort}"
client_id = "browser-test-${process.pid}"
lookup_timeout_ms = 300

[[device]]
id = "${PHONE}"
driver = "callerid"
transport = "sim"
format = "modem"
ring_timeout_ms = 1500

[[device]]
id = "${PHONE2}"
driver = "callerid"
transport = "sim"
format = "auto"
ring_timeout_ms = 1500

[popup]
business = "hotel"

[api]
listen = "127.0.0.1:${port}"
allowed_origins = ["${allowedOrigin}"]

[storage]
dir = "${stateDir}"

[[device]]
id = "${DEVICE}"
driver = "barcode"
transport = "sim"
`;
}

// ---------------------------------------------------------------- main

const results = [];
const ctx = {};
let interrupted = null; // the signal that stopped us, if any
const runTest = testRunner(results, TEST_TIMEOUT_MS, () => interrupted !== null);

async function simulate(text, device = DEVICE) {
  const r = await fetch(`http://127.0.0.1:${ctx.port}/v1/devices/${device}/simulate`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ data: text + "\n" }),
  });
  const body = await r.text();
  check(r.status === 202, `simulate ${JSON.stringify(text)}: expected 202, got ${r.status}: ${body}`);
}

/** Waits until the daemon itself has published a code.scanned event with `text` (long-poll API, from Node). */
async function daemonPublished(text) {
  return waitFor(async () => {
    const r = await fetch(`http://127.0.0.1:${ctx.port}/v1/events/poll?types=code.scanned&since=0&timeout_ms=0`);
    if (r.status !== 200) throw new Error(`poll answered ${r.status}`);
    const j = await r.json();
    return j.events.find((e) => e.type === "code.scanned" && e.data?.text === text);
  }, `the daemon to publish code.scanned ${JSON.stringify(text)} (poll API)`);
}

const pageLog = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.__log)));

async function main() {
  if (!existsSync(BIN)) {
    throw new TestFailure(`daemon binary not found at ${BIN}: run \`cargo build\` first, or set POSBRIDGE_BIN`);
  }
  if (!existsSync(CHROMIUM)) {
    throw new TestFailure(`${CHROMIUM} not found: run scripts/install-test-deps.sh`);
  }
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch (e) {
    throw new TestFailure(`playwright-core is not installed in tests/browser: run scripts/install-test-deps.sh (${e.message})`);
  }

  ctx.tmp = mkdtempSync(path.join(os.tmpdir(), "posbridge-browser-"));

  // HQ's broker: the popup test's member is pushed through it.
  ctx.brokerPort = await freePort();
  const brokerConf = path.join(ctx.tmp, "mosquitto.conf");
  writeFileSync(brokerConf, `listener ${ctx.brokerPort} 127.0.0.1\nallow_anonymous true\n`);
  ctx.broker = spawn("mosquitto", ["-c", brokerConf], { stdio: "ignore" });
  ctx.broker.on("error", (e) => log(`mosquitto: ${e.message} (run scripts/install-test-deps.sh)`));

  // Test page servers first, so their real ports go into the daemon's config.
  ctx.allowedServer = await startPageServer(() => testPage(ctx.port));
  ctx.foreignServer = await startPageServer(() => testPage(ctx.port));
  ctx.allowedOrigin = `http://localhost:${ctx.allowedServer.address().port}`;
  ctx.foreignOrigin = `http://localhost:${ctx.foreignServer.address().port}`;

  // The daemon, on a port that was free; retry if someone took it meanwhile.
  for (let attempt = 1; ; attempt++) {
    ctx.port = await freePort();
    const cfg = path.join(ctx.tmp, "posbridge.toml");
    writeFileSync(
      cfg,
      configToml({ port: ctx.port, allowedOrigin: ctx.allowedOrigin, stateDir: path.join(ctx.tmp, "state"), brokerPort: ctx.brokerPort }),
    );
    ctx.daemon = startDaemon(cfg);
    if (await waitHealthy(ctx.daemon, ctx.port)) break;
    // Someone may have taken the port between freePort() and the daemon's bind; anything else is fatal.
    const portTaken = /address already in use|AddrInUse|os error 98/i.test(ctx.daemon.output);
    if (!portTaken || attempt >= 3) {
      throw new TestFailure(`daemon exited during start-up (${JSON.stringify(ctx.daemon.exited)})\n${daemonTail(ctx.daemon)}`);
    }
    log(`daemon exited during start-up (${JSON.stringify(ctx.daemon.exited)}); retrying on another port`);
  }
  log(`daemon up on 127.0.0.1:${ctx.port}; allowed ${ctx.allowedOrigin}, foreign ${ctx.foreignOrigin}`);

  ctx.browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout: 30_000,
    // Our own handlers close the browser, the daemon and the servers, then print the summary.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  log(`chromium ${ctx.browser.version()} launched`);
  ctx.context = await ctx.browser.newContext({ viewport: { width: 1100, height: 700 } });
  ctx.context.setDefaultTimeout(WAIT_MS);

  const consoleOf = (page, label) => {
    page.__console = [];
    page.on("console", (m) => {
      page.__console.push(m.text());
      if (VERBOSE) log(`${label} console.${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => log(`${label} page error: ${e.message}`));
  };

  ctx.allowed = await ctx.context.newPage();
  consoleOf(ctx.allowed, "allowed");
  ctx.foreign = await ctx.context.newPage();
  consoleOf(ctx.foreign, "foreign");
  await Promise.all([ctx.allowed.goto(ctx.allowedOrigin + "/"), ctx.foreign.goto(ctx.foreignOrigin + "/")]);

  await runTest("A: allowed origin's WebSocket receives code.scanned", async () => {
    await waitFor(async () => {
      const l = await pageLog(ctx.allowed);
      return l.opened || l.closeCode !== null;
    }, `the allowed page's socket to open`);
    const before = await pageLog(ctx.allowed);
    check(before.opened, `allowed origin ${ctx.allowedOrigin}: socket did not open (close code ${before.closeCode})`);
    const text = "6901234567892";
    await simulate(text);
    const ev = await waitFor(async () => (await pageLog(ctx.allowed)).events.find((e) => e.data?.text === text),
      async () => `code.scanned ${text} on the allowed page (it got ${JSON.stringify((await pageLog(ctx.allowed)).raw)})`);
    check(ev.type === "code.scanned", `type: expected code.scanned, got ${JSON.stringify(ev.type)}`);
    check(ev.data.kind === "member", `data.kind: expected "member", got ${JSON.stringify(ev.data.kind)}`);
    check(ev.device === DEVICE, `device: expected ${DEVICE}, got ${JSON.stringify(ev.device)}`);
    check(ev.store === STORE, `store: expected ${STORE}, got ${JSON.stringify(ev.store)}`);
    for (const k of ["seq", "boot", "id", "time"]) check(ev[k] !== undefined && ev[k] !== null, `event has no ${k}: ${JSON.stringify(ev)}`);
    const after = await pageLog(ctx.allowed);
    const others = after.events.filter((e) => e.type !== "code.scanned");
    check(others.length === 0, `types=code.scanned filter let through: ${JSON.stringify(others)}`);
    check(after.closeCode === null, `allowed socket closed unexpectedly with ${after.closeCode}`);
  });

  await runTest("B: foreign origin's WebSocket is refused and receives nothing", async () => {
    await waitFor(async () => {
      const l = await pageLog(ctx.foreign);
      return l.opened || l.closeCode !== null;
    }, `the foreign page's socket to fail (it should be refused with 403)`);
    const early = await pageLog(ctx.foreign);
    check(!early.opened, `foreign origin ${ctx.foreignOrigin}: socket OPENED; the daemon accepted an origin not in allowed_origins`);
    const text = "6901234567908";
    await simulate(text);
    // Barriers: the daemon has published it, and (if its socket is up) the allowed page has it.
    await daemonPublished(text);
    const a = await pageLog(ctx.allowed);
    if (a.opened && a.closeCode === null) {
      await waitFor(async () => (await pageLog(ctx.allowed)).events.some((e) => e.data?.text === text),
        `the allowed page to get ${text} (barrier)`);
    }
    const f = await pageLog(ctx.foreign);
    check(!f.opened, `foreign origin ${ctx.foreignOrigin}: socket OPENED; the daemon accepted an origin not in allowed_origins`);
    check(f.closeCode === 1006, `foreign socket: expected close code 1006, got ${f.closeCode}`);
    check(f.events.length === 0, `foreign page received ${f.events.length} frame(s): ${JSON.stringify(f.raw)}`);
    // Chromium says why in the console ("Error during WebSocket handshake: Unexpected response code: 403").
    const why = ctx.foreign.__console.find((t) => /WebSocket/i.test(t));
    check(why && /\b403\b/.test(why), `foreign socket: expected a refused handshake (403); console says ${JSON.stringify(why ?? ctx.foreign.__console)}`);
  });

  await runTest("C: fetch /v1/health is blocked from the foreign origin, readable from the allowed one", async () => {
    const url = `http://127.0.0.1:${ctx.port}/v1/health`;
    const tryFetch = (page) =>
      page.evaluate(async (u) => {
        try {
          const r = await fetch(u);
          const body = await r.text();
          return { ok: true, status: r.status, body };
        } catch (e) {
          return { ok: false, error: String(e) };
        }
      }, url);
    const f = await tryFetch(ctx.foreign);
    check(!f.ok, `foreign origin could read ${url}: status ${f.status}, body ${f.body}`);
    const a = await tryFetch(ctx.allowed);
    check(a.ok, `allowed origin could not fetch ${url}: ${a.error}`);
    check(a.status === 200, `allowed fetch: expected 200, got ${a.status}: ${a.body}`);
    let j;
    try {
      j = JSON.parse(a.body);
    } catch {
      throw new TestFailure(`health body is not JSON: ${a.body}`);
    }
    check(j.status === "ok" && j.store === STORE, `health body: expected status ok, store ${STORE}; got ${a.body}`);
    // The headers behind that (page scripts cannot see Access-Control-Allow-Origin), straight from Node.
    const ra = await fetch(url, { headers: { origin: ctx.allowedOrigin } });
    const acao = ra.headers.get("access-control-allow-origin");
    check(ra.status === 200 && acao === ctx.allowedOrigin,
      `GET ${url} with Origin ${ctx.allowedOrigin}: expected 200 with Access-Control-Allow-Origin ${ctx.allowedOrigin}, got ${ra.status} with ${acao}`);
    const rf = await fetch(url, { headers: { origin: ctx.foreignOrigin } });
    check(rf.status === 403, `GET ${url} with Origin ${ctx.foreignOrigin}: expected 403, got ${rf.status}`);
    check(!rf.headers.get("access-control-allow-origin"),
      `the 403 for ${ctx.foreignOrigin} carries Access-Control-Allow-Origin ${rf.headers.get("access-control-allow-origin")}`);
  });

  await runTest("D: status page shows the device and live events", async () => {
    const page = await ctx.context.newPage();
    consoleOf(page, "status");
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    try {
      const resp = await page.goto(`http://127.0.0.1:${ctx.port}/`);
      check(resp && resp.status() === 200, `GET / answered ${resp && resp.status()}`);
      await page.waitForSelector("#conn.up", { timeout: WAIT_MS }).catch(async () => {
        throw new TestFailure(`#conn never got class "up"; it says ${JSON.stringify(await page.textContent("#conn"))}`);
      });
      const text = "M20240917";
      await simulate(text);
      const row = page.locator('#events tr.event[data-type="code.scanned"]', { hasText: text });
      await row.first().waitFor({ timeout: WAIT_MS }).catch(async () => {
        throw new TestFailure(`no tr.event[data-type="code.scanned"] containing ${text}; #events has: ${JSON.stringify(await page.textContent("#events"))}`);
      });
      const cells = await row.first().locator("td").allTextContents();
      check(cells.length === 5, `event row should have 5 cells (seq, time, device, type, data), has ${cells.length}: ${JSON.stringify(cells)}`);
      check(cells[2] === DEVICE, `event row device cell: expected ${DEVICE}, got ${JSON.stringify(cells[2])}`);
      check(cells[3] === "code.scanned", `event row type cell: got ${JSON.stringify(cells[3])}`);
      check(/"kind":"member"/.test(cells[4]) && cells[4].includes(text), `event row data cell: got ${cells[4]}`);
      const dev = page.locator(`#devices tr[data-device="${DEVICE}"]`);
      await dev.waitFor({ timeout: WAIT_MS }).catch(async () => {
        throw new TestFailure(`#devices has no row for ${DEVICE}; it has: ${JSON.stringify(await page.textContent("#devices"))}`);
      });
      const devCells = await dev.locator("td").allTextContents();
      check(devCells[0] === DEVICE, `device row id cell: ${JSON.stringify(devCells)}`);
      await waitFor(async () => (await page.textContent("#store")) === STORE, `#store to say ${STORE}`);
      // The uplink and printers tables, and times in the machine's zone.
      await waitFor(async () => /yes/.test(await page.textContent("#uplink tbody")),
        async () => `#uplink to say connected; it says ${JSON.stringify(await page.textContent("#uplink tbody"))}`);
      check(/no printers configured/.test(await page.textContent("#printers tbody")), `#printers: ${await page.textContent("#printers tbody")}`);
      check(!/Z$/.test(cells[1]) && cells[1].length > 0, `event time in local time: ${cells[1]}`);
      check((await page.textContent("#zone")).length > 0, "the page names its time zone");
      // A Chinese member code too, for the screenshot to show CJK rendering.
      const cjk = "会员卡 M000123";
      await simulate(cjk);
      await page.locator('#events tr.event[data-type="code.scanned"]', { hasText: cjk }).first().waitFor({ timeout: WAIT_MS });
      check(errors.length === 0, `status page threw: ${errors.join("; ")}`);
      mkdirSync(SHOT_DIR, { recursive: true });
      const shot = path.join(SHOT_DIR, "status.png");
      await page.screenshot({ path: shot, fullPage: true });
      log(`screenshot: ${path.relative(process.cwd(), shot)}`);
    } finally {
      await page.close().catch(() => {});
    }
  });

  await runTest("E: the front-desk popup shows the whole member, withheld numbers and concurrent calls", async () => {
    const base = `http://127.0.0.1:${ctx.port}`;
    await waitFor(async () => (await (await fetch(`${base}/v1/uplink`)).json()).connected, "the uplink to connect to mosquitto");
    // HQ pushes a member (mosquitto_pub plays HQ).
    const member = { id: "m-7", name: "王芳", tier: "金卡", points: 1280, balance_fen: 35000, phones: ["138 1234 5678"],
      preferences: ["无烟房", "高楼层"], tags: ["常住"], note: "<b>对花生过敏</b>",
      history: [{ date: "2026-11-20", store: "北京王府井店", what: "豪华大床房 2晚" }, { date: "2026-10-02", store: "上海店", what: "标准间" }] };
    const pub = spawn("mosquitto_pub", ["-p", String(ctx.brokerPort), "-q", "1", "-t", `posbridge/${STORE}/members`,
      "-m", JSON.stringify({ op: "upsert", members: [member] })], { stdio: "ignore" });
    await new Promise((r) => pub.on("exit", r));
    await waitFor(async () => (await (await fetch(`${base}/v1/members/lookup?phone=13812345678`)).json()).source === "cache",
      "the pushed member in the cache");

    const page = await ctx.context.newPage();
    consoleOf(page, "popup");
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const text = (sel) => page.textContent(sel);
    try {
      const resp = await page.goto(`${base}/popup`);
      check(resp && resp.status() === 200, `GET /popup answered ${resp && resp.status()}`);
      await page.waitForSelector("#conn.up", { timeout: WAIT_MS });
      check(await page.isHidden("#banner"), "no banner while connected");
      const t0 = Date.now();
      await simulate("RING\r\nDATE = 1124\r\nTIME = 1015\r\nNMBR = 13812345678\r\nNAME = WANG FANG\r\n\r\n", PHONE);
      await waitFor(async () => (await page.locator(".card .name").first().textContent()) === "王芳",
        async () => `the card to say 王芳; it says ${JSON.stringify(await page.locator(".card .name").first().textContent())}`);
      log(`popup on screen ${Date.now() - t0} ms after the box spoke`);
      const card = page.locator(".card").first();
      const inCard = (cls) => card.locator("." + cls).textContent();
      check((await inCard("points")) === "1280", `points: ${await inCard("points")}`);
      check((await inCard("balance")) === "¥350.00", `balance: ${await inCard("balance")}`);
      check((await inCard("tier")) === "金卡", `tier: ${await inCard("tier")}`);
      check((await inCard("number")) === "138 1234 5678", `number grouped: ${await inCard("number")}`);
      check((await inCard("visit-label")) === "上次入住", `hotel wording: ${await inCard("visit-label")}`);
      check((await inCard("visit")) === "2026-11-20", `last stay: ${await inCard("visit")}`);
      const prefs = await inCard("prefs");
      check(prefs.includes("无烟房") && prefs.includes("高楼层") && prefs.includes("常住"), `preferences and tags: ${prefs}`);
      check((await inCard("note")) === "<b>对花生过敏</b>", `the note, escaped: ${await inCard("note")}`);
      check((await card.locator(".note b").count()) === 0, "the note's markup is not markup");
      const history = await inCard("history");
      check(history.includes("北京王府井店") && history.includes("豪华大床房 2晚"), `history: ${history}`);
      check((await inCard("caller")).includes("WANG FANG"), `the box's caller name: ${await inCard("caller")}`);
      const shown = await page.innerText("body");
      check(!/ms\b|cache|本地/.test(shown), `no internal jargon on the page: ${shown.slice(0, 200)}`);
      mkdirSync(SHOT_DIR, { recursive: true });
      const shot = path.join(SHOT_DIR, "popup.png");
      await page.screenshot({ path: shot, fullPage: true, animations: "disabled" });
      log(`screenshot: ${path.relative(process.cwd(), shot)}`);

      // The rings stop without the box saying answered or not: ended, not "missed".
      await waitFor(async () => /通话结束/.test(await text("#calls")),
        async () => `the ended call in the recent list; it has ${JSON.stringify(await text("#calls"))}`);
      check(!/未接/.test(await text("#calls")), `a call the box did not call missed is not shown missed: ${await text("#calls")}`);

      // A withheld number, and two lines ringing at once: one card each.
      await simulate("RING\r\nNMBR = P\r\n\r\n", PHONE);
      await simulate("RING\r\nNMBR = 02087654321\r\n\r\n", PHONE2);
      await waitFor(async () => {
        const names = await page.locator(".card .name").allTextContents();
        return names.includes("号码隐藏") && names.includes("未知来电");
      }, async () => `cards for both calls; they say ${JSON.stringify(await page.locator(".card .name").allTextContents())}`);
      const numbers = await page.locator(".card .number").allTextContents();
      check(numbers.includes("020 8765 4321"), `landline grouped: ${numbers}`);

      // A recent call clicked brings its card back.
      await waitFor(async () => (await page.locator("#calls tr").count()) >= 3, "three calls in the recent list");
      await page.locator("#calls tr", { hasText: "138 1234 5678" }).first().click();
      await waitFor(async () => (await page.locator(".card .name").first().textContent()) === "王芳",
        "the clicked call's card on top");

      // An NCID server on PHONE2: six lines ring at once (and a call goes out
      // on a seventh). The page keeps the newest four cards, never a card for
      // the call out; a caller who gives up is 未接 in the recent list.
      const cid = (line, n) => `CID: *DATE*11242026*TIME*1016*LINE*${line}*NMBR*1390000000${n}*MESG*NONE*NAME*NO NAME*\r\n`;
      let burst = "";
      for (let n = 1; n <= 6; n++) burst += cid(`L${n}`, n);
      burst += "OUT: *DATE*11242026*TIME*1016*LINE*L7*NMBR*01088887777*MESG*NONE*NAME*NO NAME*\r\n";
      await simulate(burst, PHONE2);
      await waitFor(async () => (await page.locator(".card .number").allTextContents()).includes("139 0000 0006"),
        async () => `the newest line's card; cards say ${JSON.stringify(await page.locator(".card .number").allTextContents())}`);
      const onScreen = await page.locator(".card .number").allTextContents();
      check(onScreen.length === 4, `at most four cards at once: ${JSON.stringify(onScreen)}`);
      check(!onScreen.includes("010 8888 7777"), `no card for a call dialed out: ${JSON.stringify(onScreen)}`);
      check((await page.locator(".card .headline").first().textContent()) === "来电 · 线路 L6", "the card names its line");
      await simulate("CIDINFO: *LINE*L6*RING*-1*TIME*10:16:05*\r\n", PHONE2);
      await waitFor(async () => (await page.locator("#calls tr.missed", { hasText: "139 0000 0006" }).count()) === 1,
        async () => `the abandoned call shown missed; the list says ${JSON.stringify(await text("#calls"))}`);
      check(/未接/.test(await page.locator("#calls tr.missed").first().textContent()), "and says 未接");
      check(errors.length === 0, `popup page threw: ${errors.join("; ")}`);
    } finally {
      await page.close().catch(() => {});
    }
  });

  await runTest("E2: the popup says why when it cannot get in", async () => {
    // A second daemon with a token: the popup opened without ?token= says so across the page.
    const port = await freePort();
    const cfg = path.join(ctx.tmp, "tokens.toml");
    writeFileSync(cfg, `[store]\nid = "tokens"\n[api]\nlisten = "127.0.0.1:${port}"\n[[api.tokens]]\nname = "desk"\ntoken = "desk-token-0123456789abcdef"\nscopes = ["events", "members"]\n[[api.tokens]]\nname = "till"\ntoken = "till-token-0123456789abcdef"\nscopes = ["print"]\n[storage]\ndir = "${path.join(ctx.tmp, "state-tokens")}"\n`);
    const d = startDaemon(cfg);
    const page = await ctx.context.newPage();
    try {
      check(await waitHealthy(d, port), `the token daemon did not start\n${daemonTail(d)}`);
      await page.goto(`http://127.0.0.1:${port}/popup`);
      await page.waitForSelector("#banner:not([hidden])", { timeout: WAIT_MS });
      const title = await page.textContent("#banner-title");
      check(title === "需要令牌", `banner: ${title}`);
      check((await page.textContent("#banner-text")).includes("?token="), "the banner says how");
      // The status page says why its tables are empty.
      await page.goto(`http://127.0.0.1:${port}/`);
      await waitFor(async () => /needs a token/.test(await page.textContent("#devices tbody")),
        async () => `#devices to say a token is needed; it says ${JSON.stringify(await page.textContent("#devices tbody"))}`);
      check(/needs a token/.test(await page.textContent("#printers tbody")), "the printers table says why too");
      // A token without the scopes the popup needs: 没有权限.
      await page.goto(`http://127.0.0.1:${port}/popup?token=till-token-0123456789abcdef`);
      await page.waitForSelector("#banner:not([hidden])", { timeout: WAIT_MS });
      check((await page.textContent("#banner-title")) === "没有权限", `banner: ${await page.textContent("#banner-title")}`);
      check((await page.textContent("#banner-text")).includes("events"), "the banner names what is missing");
      // The daemon does not answer the page's API at all: 无法连接.
      await page.route("**/v1/calls**", (r) => r.abort());
      await page.goto(`http://127.0.0.1:${port}/popup?token=desk-token-0123456789abcdef`);
      await page.waitForSelector("#banner:not([hidden])", { timeout: WAIT_MS });
      check((await page.textContent("#banner-title")) === "无法连接", `banner: ${await page.textContent("#banner-title")}`);
      await page.unroute("**/v1/calls**");
      // With the token it gets in.
      await page.goto(`http://127.0.0.1:${port}/popup?token=desk-token-0123456789abcdef`);
      await page.waitForSelector("#conn.up", { timeout: WAIT_MS });
      check(await page.isHidden("#banner"), "no banner with the token");
      // The daemon stops: the page says it lost the connection.
      await stopDaemon(d);
      await page.waitForSelector("#banner:not([hidden])", { timeout: WAIT_MS });
      check((await page.textContent("#banner-title")) === "连接已断开", `banner: ${await page.textContent("#banner-title")}`);
    } finally {
      await page.close().catch(() => {});
      await stopDaemon(d);
    }
  });

  await runTest("F: a foreign page's no-cors GETs are refused and reach no one", async () => {
    const base = `http://127.0.0.1:${ctx.port}`;
    const metric = async (name) => {
      const text = await (await fetch(`${base}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(name + " "));
      return Number(line?.split(" ")[1] ?? NaN);
    };
    await waitFor(async () => (await (await fetch(`${base}/v1/uplink`)).json()).connected, "the uplink to connect");
    // HQ's side: every lookup the store asks for.
    const sub = spawn("mosquitto_sub", ["-p", String(ctx.brokerPort), "-v", "-t", `posbridge/${STORE}/lookup/request`]);
    let seen = "";
    sub.stdout.on("data", (c) => (seen += c.toString()));
    try {
      await new Promise((r) => setTimeout(r, 300)); // subscribed
      const lookups = await metric("posbridge_member_lookups_hq_total");
      const refused = await metric("posbridge_http_refused_total");
      // What any site can make a browser send without CORS: no Origin header.
      const outcome = await ctx.foreign.evaluate(async (b) => {
        const img = (u) => new Promise((res) => {
          const i = new Image();
          i.onload = () => res("loaded");
          i.onerror = () => res("error");
          i.src = u;
        });
        const r = [];
        r.push(await img(`${b}/v1/members/lookup?phone=13900000001`));
        r.push(await fetch(`${b}/v1/members/lookup?phone=13900000002`, { mode: "no-cors" }).then(() => "opaque", (e) => String(e)));
        r.push(await fetch(`${b}/v1/events/poll?timeout_ms=60000`, { mode: "no-cors" }).then(() => "opaque", (e) => String(e)));
        return r;
      }, base);
      log(`foreign no-cors requests: ${JSON.stringify(outcome)}`);
      await waitFor(async () => (await metric("posbridge_http_refused_total")) >= refused + 3,
        async () => `3 more refusals (was ${refused}, now ${await metric("posbridge_http_refused_total")})`, WAIT_MS);
      check((await metric("posbridge_member_lookups_hq_total")) === lookups, "a foreign page's GET sent a lookup to HQ");
      // The control: the allowed page's lookup does reach HQ, so the watcher works.
      await ctx.allowed.evaluate((b) => fetch(`${b}/v1/members/lookup?phone=13900000003`).then((r) => r.text()), base);
      await waitFor(async () => seen.includes("13900000003"), `HQ to see the allowed page's lookup; it saw ${JSON.stringify(seen)}`);
      check(!/1390000000[12]/.test(seen), `HQ saw a lookup from the foreign page: ${seen}`);
    } finally {
      sub.kill("SIGKILL");
    }
  });
}

let cleaning = null;
function cleanup() {
  cleaning ??= (async () => {
    await ctx.browser?.close().catch((e) => log(`closing the browser: ${e.message}`));
    await stopDaemon(ctx.daemon).catch((e) => log(`stopping the daemon: ${e.message}`));
    ctx.broker?.kill("SIGKILL");
    await closeServer(ctx.allowedServer);
    await closeServer(ctx.foreignServer);
    if (ctx.tmp) rmSync(ctx.tmp, { recursive: true, force: true });
  })();
  return cleaning;
}


let finished = false;
/** Prints the summary once and exits. */
function finish({ setupError = null, interrupted = null } = {}) {
  if (finished) return;
  finished = true;
  const ex = ctx.daemon?.exited;
  if (ex && !(ex.code === 0 || (interrupted && ex.signal))) {
    log(`daemon ended badly: ${JSON.stringify(ex)}`);
  }
  const failedRes = results.filter((r) => !r.ok);
  if ((failedRes.length || setupError) && ctx.daemon && !VERBOSE) {
    console.log("last daemon log lines:\n" + daemonTail(ctx.daemon));
  }
  const passed = results.filter((r) => r.ok).length;
  // Set-up failure or interruption fails every test that did not get to run (at least one).
  const notRun = setupError ? Math.max(1, TESTS - results.length) : interrupted ? TESTS - results.length : 0;
  const failed = failedRes.length + notRun;
  log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(interrupted ? 130 : failed === 0 ? 0 : 1);
}

// Last resort if we crash: never leave the daemon running.
process.on("exit", () => {
  if (ctx.daemon && !ctx.daemon.exited) ctx.daemon.child.kill("SIGKILL");
});
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, async () => {
    if (finished || interrupted) return;
    interrupted = sig;
    log(`${sig}: stopping`);
    await cleanup();
    finish({ interrupted: sig });
  });
}

let setupError = null;
try {
  await main();
} catch (e) {
  setupError = e;
  if (!interrupted) log(`SETUP FAILED: ${e instanceof TestFailure ? e.message : clip(e.stack || String(e))}`);
} finally {
  await cleanup();
}
finish({ setupError });
