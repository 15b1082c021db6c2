// Headless Chromium on moonwire's own pages (Debian's /usr/bin/chromium
// through playwright-core; never downloads a browser).
//
//   node pages.js showcase BASE_URL SHOT.png   four panels live; a message sent from
//                                              one reaches SSE, WebSocket and long poll
//                                              with the same id; saves a screenshot
//   node pages.js chat BASE_URL SHOT.png       two browsers chat in one room
//   node pages.js reload BASE_URL APP_DIR      --reload: the page reloads itself when its
//                                              HTML changes and shows a broken load's error
//
// Prints one JSON line with what it saw; exits 1 with a message on stderr
// when a step does not happen in time.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_MS = 15000;

async function launch() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: run scripts/setup --test`);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "moonwire-chromium-"));
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

async function until(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: STEP_MS, polling: 25 });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}`);
  }
}

async function showcase(base, shot) {
  const ctx = await launch();
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(base + "/", { timeout: STEP_MS });
    for (const p of ["sse", "ws", "poll"])
      await until(page, `the ${p} panel to connect`, (id) => document.getElementById(id + "-status").classList.contains("ok"), p);
    await page.click("#ask");
    await until(page, "the plain answer", () => document.querySelector("#plain-wire li") !== null);
    const text = "hello from the plain panel " + Date.now();
    await page.fill('form[data-via="plain"] input', text);
    await page.click('form[data-via="plain"] button');
    const ids = {};
    for (const p of ["sse", "ws", "poll"]) {
      await until(page, `the message in the ${p} panel`, ([panel, t]) =>
        [...document.querySelectorAll(`#${panel}-wire li`)].some((li) => li.dataset.text === t), [p, text]);
      ids[p] = await page.evaluate(([panel, t]) =>
        [...document.querySelectorAll(`#${panel}-wire li`)].find((li) => li.dataset.text === t).dataset.id, [p, text]);
    }
    // and one sent as a WebSocket frame reaches the other two
    const text2 = "a frame from the ws panel " + Date.now();
    await page.fill('form[data-via="ws"] input', text2);
    await page.click('form[data-via="ws"] button');
    const ids2 = {};
    for (const p of ["sse", "ws", "poll"]) {
      await until(page, `the frame's message in the ${p} panel`, ([panel, t]) =>
        [...document.querySelectorAll(`#${panel}-wire li`)].some((li) => li.dataset.text === t), [p, text2]);
      ids2[p] = await page.evaluate(([panel, t]) =>
        [...document.querySelectorAll(`#${panel}-wire li`)].find((li) => li.dataset.text === t).dataset.id, [p, text2]);
    }
    await page.screenshot({ path: shot, fullPage: true });
    console.log(JSON.stringify({ ids, ids2, errors }));
  } finally {
    await ctx.close();
  }
}

async function chat(base, shot) {
  const ctx = await launch();
  try {
    const a = ctx.pages()[0] || (await ctx.newPage());
    const b = await ctx.newPage();
    const errors = [];
    for (const p of [a, b]) p.on("pageerror", (e) => errors.push(String(e)));
    const join = async (page, nick) => {
      await page.goto(base + "/", { timeout: STEP_MS });
      await page.fill("#room", "browsers");
      await page.fill("#nick", nick);
      await page.click("#join-btn");
      await until(page, `${nick} to join`, () => document.getElementById("state").className === "open");
    };
    await join(a, "ada");
    await join(b, "bob");
    const text = "hi bob, it is ada " + Date.now();
    await a.fill("#text", text);
    await a.click("#send-btn");
    await until(b, "bob to see ada's message", (t) => document.getElementById("messages").textContent.includes(t), text);
    await until(a, "ada to see her own message back", (t) => document.getElementById("messages").textContent.includes(t), text);
    await b.screenshot({ path: shot, fullPage: true });
    console.log(JSON.stringify({ seen: true, errors }));
  } finally {
    await ctx.close();
  }
}

async function reload(base, dir) {
  const ctx = await launch();
  try {
    const page = ctx.pages()[0] || (await ctx.newPage());
    await page.goto(base + "/", { timeout: STEP_MS });
    await until(page, "the first page", () => document.body.textContent.includes("version one"));
    // saves before the live-reload stream is open would go unseen
    await until(page, "the live-reload stream", () => window.__moonwireLiveReload && window.__moonwireLiveReload.readyState === 1);
    await page.evaluate(() => { window.__marker = 1; });
    // an editor's save of the page: temp file, then rename over it
    const html = path.join(dir, "public", "index.html");
    fs.writeFileSync(html + ".tmp", fs.readFileSync(html, "utf8").replace("version one", "version two"));
    fs.renameSync(html + ".tmp", html);
    await until(page, "the page to reload itself", () => !window.__marker && document.body.textContent.includes("version two"));
    await until(page, "the new page's live-reload stream", () => window.__moonwireLiveReload && window.__moonwireLiveReload.readyState === 1);
    // a broken script: the page shows the load error instead of reloading
    const app = path.join(dir, "app.lua");
    const good = fs.readFileSync(app, "utf8");
    fs.writeFileSync(app + ".tmp", "local broken = = 1\n" + good);
    fs.renameSync(app + ".tmp", app);
    await until(page, "the load error", () => {
      const box = document.getElementById("moonwire-load-error");
      return box && /app\.lua:1:/.test(box.textContent);
    });
    const shown = await page.evaluate(() => document.getElementById("moonwire-load-error").textContent);
    console.log(JSON.stringify({ reloaded: true, error: shown }));
  } finally {
    await ctx.close();
  }
}

const [mode, base, arg] = process.argv.slice(2);
const run = { showcase, chat, reload }[mode];
if (!run || !base) {
  console.error("usage: node pages.js showcase|chat|reload BASE_URL ARG");
  process.exit(2);
}
run(base, arg).catch((e) => {
  console.error(String(e && e.stack || e));
  process.exit(1);
});
