// Headless Chromium's EventSource against tests/apps/browser_sse: the page
// receives events; the server ends the stream (stream:close()) and
// publishes while the browser is away; the browser reconnects by itself
// with Last-Event-ID and gets the rest with no gap and no duplicate.
//
//   node tests/browser/sse_resume.js http://127.0.0.1:PORT
//
// Prints one JSON line: { received, dom, opens, errors }. Exits 1 with a
// message on stderr when a step does not happen in time. Uses Debian's
// /usr/bin/chromium through playwright-core; never downloads a browser.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_MS = 15000;

async function post(base, target, body) {
  const r = await fetch(base + target, { method: "POST", body: body || "" });
  if (r.status !== 200) throw new Error(`POST ${target}: ${r.status}`);
  return r.json();
}

// Waits until fn() (run in the page) is true.
async function until(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: STEP_MS, polling: 20 });
  } catch (e) {
    const report = await page.evaluate(() => window.report).catch(() => null);
    throw new Error(`timed out waiting for ${what}; page report: ${JSON.stringify(report)}`);
  }
}

async function main() {
  const base = process.argv[2];
  if (!base) throw new Error("usage: node sse_resume.js BASE_URL");
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: run scripts/setup --test`);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "moonwire-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    await page.goto(base + "/page/", { timeout: STEP_MS });
    await until(page, "the first connection", () => window.report.opens === 1);

    // live events
    for (let i = 1; i <= 3; i++) await post(base, "/publish", "m" + i);
    await until(page, "3 events", () => window.report.received.length >= 3);

    // the server ends the stream and publishes two messages before the
    // browser can be back (it waits `retry: 250` ms)
    const drop = await post(base, "/drop?n=2");
    if (drop.dropped !== 1) throw new Error("expected one open stream, got " + JSON.stringify(drop));
    await until(page, "the reconnection", () => window.report.opens === 2);
    await until(page, "the 2 messages of the gap", () => window.report.received.length >= 5);

    // live again on the new connection
    for (let i = 6; i <= 8; i++) await post(base, "/publish", "m" + i);
    await until(page, "8 events", () => window.report.received.length >= 8);
    // nothing more arrives (a duplicate would)
    await page.waitForTimeout(300);

    const report = await page.evaluate(() => window.report);
    const dom = await page.$$eval("#log li", (lis) => lis.map((li) => li.textContent));
    if (pageErrors.length) throw new Error("page errors: " + pageErrors.join("; "));
    console.log(JSON.stringify({ received: report.received, dom, opens: report.opens,
                                 errors: report.errors }));
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(String(e && e.stack || e));
  process.exit(1);
});
