// Headless Chromium on moonwire's own pages (Debian's /usr/bin/chromium
// through playwright-core; never downloads a browser).
//
//   node pages.js showcase BASE_URL SHOT.png   four panels live; a message sent from
//                                              one reaches SSE, WebSocket and long poll
//                                              with the same id; saves a screenshot
//   node pages.js chat BASE_URL SHOT.png       two browsers chat in one room
//   node pages.js reload BASE_URL APP_DIR      --reload: the page reloads itself when its
//                                              HTML changes and shows a broken load's error
//   node pages.js todo BASE_URL SHOT.png       examples/todo: add two todos with the form, tick
//                                              one, delete one, filter, reload; the list it shows
//   node pages.js dashboard BASE_URL SHOT.png  examples/dashboard: samples arrive live, the four
//                                              canvases draw their lines, a second tab counts as
//                                              a stream, "Spike the load" lifts the load
//   node pages.js live-feed BASE_URL SHOT.png  examples/live-feed: a post from the form and one
//                                              from outside arrive with their ids; the stream
//                                              cut under the page resumes with no gap
//   node pages.js notifications BASE_URL SHOT.png
//                                              examples/notifications: a held poll delivers a
//                                              notification sent after it parked, twice, then a
//                                              burst of two from outside; the inbox in order
//
// Prints one JSON line with what it saw; exits 1 with a message on stderr
// when a step does not happen in time.
"use strict";
const fs = require("fs");
const net = require("net");
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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A page of a fresh browser, with its uncaught errors collected.
async function open(ctx, base, errors) {
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/", { timeout: STEP_MS });
  return page;
}

async function post(base, route, body) {
  const r = await fetch(base + route, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`POST ${route} answered ${r.status}`);
  return r.json();
}

// examples/todo: every change through the page's own form and buttons.
async function todo(base, shot) {
  const ctx = await launch();
  try {
    const errors = [];
    const page = await open(ctx, base, errors);
    const rows = () => page.evaluate(() => [...document.querySelectorAll("#todos li[data-id]")].map((li) => ({
      id: Number(li.dataset.id), title: li.querySelector(".title").textContent,
      done: li.querySelector("input[type=checkbox]").checked, struck: li.classList.contains("done") })));
    await until(page, "the empty list", () => document.querySelector("#todos li.empty") !== null);
    // a blank title: the server's 400 says why, shown by the page
    await page.fill("#title", "   ");
    await page.click("#add button");
    await until(page, "the server's reason for refusing a blank title",
      () => document.getElementById("error").textContent.length > 0);
    const refused = await page.evaluate(() => document.getElementById("error").textContent);
    const stamp = Date.now();
    const a = "Water the plants " + stamp, b = "Buy more coffee " + stamp;
    for (const title of [a, b]) {
      await page.fill("#title", title);
      await page.click("#add button");
      await until(page, `"${title}" in the list`, (t) =>
        [...document.querySelectorAll("#todos .title")].some((s) => s.textContent === t), title);
    }
    const added = await rows();
    const idOf = (t) => added.find((r) => r.title === t).id;
    // tick the first, delete the second
    await page.click(`#todos li[data-id="${idOf(a)}"] input[type=checkbox]`);
    await until(page, "the first todo to show as done", (id) => {
      const li = document.querySelector(`#todos li[data-id="${id}"]`);
      return li && li.classList.contains("done") && li.querySelector("input").checked;
    }, idOf(a));
    await page.click(`#todos li[data-id="${idOf(b)}"] button.delete`);
    await until(page, "the second todo to go", (id) => !document.querySelector(`#todos li[data-id="${id}"]`), idOf(b));
    const shown = await rows();
    // the "Open" filter shows nothing now, "Done" the ticked one
    await page.click('.filters button[data-filter="false"]');
    await until(page, "the empty Open filter", () => document.querySelector("#todos li.empty") !== null);
    await page.click('.filters button[data-filter="true"]');
    await until(page, "the Done filter", () => document.querySelectorAll("#todos li[data-id]").length > 0);
    const doneFilter = await rows();
    await page.click('.filters button[data-filter=""]');
    await until(page, "the whole list again", (n) => document.querySelectorAll("#todos li[data-id]").length === n, shown.length);
    // a reload asks the server again: the store outlives the page
    await page.reload({ timeout: STEP_MS });
    await until(page, "the list after the reload", () => document.querySelector("#todos li") !== null);
    const reloaded = await rows();
    const error = await page.evaluate(() => document.getElementById("error").textContent);
    await page.screenshot({ path: shot, fullPage: true });
    console.log(JSON.stringify({ refused, added, shown, doneFilter, reloaded, error, errors }));
  } finally {
    await ctx.close();
  }
}

// examples/dashboard: how many pixels of each chart have its line's
// colour (an expression, for evaluate and waitForFunction alike).
const SERIES_PIXELS = `(() => {
  const colors = { load: [0xc2, 0x41, 0x0c], rps: [0x1d, 0x4e, 0xd8], streams: [0x15, 0x80, 0x3d], lua_kib: [0x7c, 0x3a, 0xed] };
  const out = {};
  for (const [key, [r, g, b]] of Object.entries(colors)) {
    const c = document.getElementById("c-" + key);
    out[key] = 0;
    if (!c.width || !c.height) continue;
    const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < px.length; i += 4)
      if (px[i + 3] > 128 && Math.abs(px[i] - r) + Math.abs(px[i + 1] - g) + Math.abs(px[i + 2] - b) < 40) out[key]++;
  }
  return out;
})()`;

async function dashboard(base, shot) {
  const ctx = await launch();
  try {
    const errors = [];
    const page = await open(ctx, base, errors);
    const num = (id) => page.evaluate((i) => Number(document.getElementById(i).textContent), id);
    await until(page, "the stream to open", () => document.getElementById("state").className === "open");
    await until(page, "a first sample", () => /^\d+$/.test(document.getElementById("last-id").textContent));
    const firstId = await num("last-id");
    // live: two more samples arrive without anything being asked
    await until(page, "two more samples", (id) => Number(document.getElementById("last-id").textContent) >= id + 2, firstId);
    const lastId = await num("last-id");
    const values = await page.evaluate(() => Object.fromEntries(
      ["load", "rps", "streams", "lua_kib"].map((k) => [k, document.getElementById("v-" + k).textContent])));
    await until(page, "the four lines drawn", `Object.values(${SERIES_PIXELS}).every((n) => n > 0)`);
    const pixels = await page.evaluate(SERIES_PIXELS);
    // a second tab is a second open stream, in both pages
    const second = await ctx.newPage();
    second.on("pageerror", (e) => errors.push(String(e)));
    await second.goto(base + "/", { timeout: STEP_MS });
    await until(second, "the second tab's stream", () => document.getElementById("state").className === "open");
    await until(page, "two open streams", () => document.getElementById("v-streams").textContent === "2");
    await until(second, "two open streams in the second tab", () => document.getElementById("v-streams").textContent === "2");
    await second.close();
    await until(page, "one open stream again", () => document.getElementById("v-streams").textContent === "1");
    // the button: one POST, and the load the stream carries climbs
    const loadBefore = await page.evaluate(() => parseInt(document.getElementById("v-load").textContent, 10));
    await page.click("#spike");
    await until(page, "the spike's note", () => document.getElementById("notes").textContent.includes("Load spike for 10 s"));
    await until(page, "the load to climb past 60 %", () => parseInt(document.getElementById("v-load").textContent, 10) >= 60);
    const loadAfter = await page.evaluate(() => parseInt(document.getElementById("v-load").textContent, 10));
    const blank = await page.evaluate(() => {
      const c = document.getElementById("c-load"), e = document.createElement("canvas");
      e.width = c.width; e.height = c.height;
      return c.toDataURL() === e.toDataURL();
    });
    const state = await page.evaluate(() => ({
      reconnects: Number(document.getElementById("reconnects").textContent),
      count: Number(document.getElementById("count").textContent),
      lastId: Number(document.getElementById("last-id").textContent),
    }));
    await page.screenshot({ path: shot, fullPage: true });
    console.log(JSON.stringify({ firstId, lastId, values, pixels, loadBefore, loadAfter, blank, state, errors }));
  } finally {
    await ctx.close();
  }
}

// examples/live-feed: the ids, newest first, of every event row the page shows.
const feedRows = (page) => page.evaluate(() => [...document.querySelectorAll("#events li:not(.note)")].map((li) => ({
  id: li.querySelector(".id").textContent, kind: li.className, text: li.lastElementChild.textContent })));

// A TCP relay between the browser and the server that can drop every
// connection at once and hold new ones until it is let go: from the
// browser's side, the server ended the stream and is briefly unreachable.
// Remembers the Last-Event-ID header of each request that comes through.
async function relay(base) {
  const target = new URL(base);
  const sockets = new Set(), waiting = [], lastEventIds = [];
  let down = false;
  const connect = (client) => {
    const up = net.connect(Number(target.port), target.hostname);
    for (const [a, b] of [[client, up], [up, client]]) {
      sockets.add(a);
      a.on("error", () => b.destroy());
      a.on("close", () => { sockets.delete(a); b.destroy(); });
      a.pipe(b);
    }
    client.on("data", (chunk) => {
      const m = /^last-event-id:\s*(\S+)/im.exec(chunk.toString("latin1"));
      if (m) lastEventIds.push(m[1]);
    });
  };
  const server = net.createServer((client) => {
    client.on("error", () => {});
    if (down) { client.pause(); waiting.push(client); } else connect(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    lastEventIds,
    drop() { down = true; for (const s of sockets) s.destroy(); },
    restore() { down = false; for (const c of waiting.splice(0)) if (!c.destroyed) { connect(c); c.resume(); } },
    close() { for (const s of sockets) s.destroy(); for (const c of waiting) c.destroy(); server.close(); },
  };
}

async function liveFeed(base, shot) {
  const ctx = await launch();
  const link = await relay(base);
  try {
    const errors = [];
    const page = await open(ctx, link.url, errors);
    const idOf = (text) => page.evaluate((t) => {
      const li = [...document.querySelectorAll("#events li.post")].find((l) => l.lastElementChild.textContent === t);
      return li ? li.querySelector(".id").textContent : null;
    }, text);
    const arrives = (what, text) => until(page, what, (t) =>
      [...document.querySelectorAll("#events li.post")].some((l) => l.lastElementChild.textContent === t), text);
    await until(page, "the stream to open", () => document.getElementById("state").className === "open");
    // one from the page's form
    const stamp = Date.now();
    const typed = "typed in the page " + stamp;
    await page.fill("#text", typed);
    await page.click("#post button");
    await arrives("the typed post", typed);
    const typedId = await idOf(typed);
    const cleared = await page.evaluate(() => document.getElementById("text").value === "");
    // one from outside: the id the server answers is the id the page shows
    const outside = "posted from outside " + stamp;
    const outsideAnswer = await post(base, "/publish", { text: outside });
    await arrives("the outside post", outside);
    const outsideId = await idOf(outside);
    // the stream ends under the page and the server is out of reach; one is
    // published meanwhile; the browser comes back by itself with
    // Last-Event-ID and the server replays what it missed
    link.drop();
    await until(page, "the page to see the drop", () => document.getElementById("state").className === "connecting");
    const lastIdAtDrop = await page.evaluate(() => document.getElementById("last-id").textContent);
    const missed = "published while the page was away " + stamp;
    const missedAnswer = await post(base, "/publish", { text: missed });
    link.restore();
    await until(page, "the stream to come back", () =>
      document.getElementById("state").className === "open" && document.getElementById("reconnects").textContent === "1");
    await arrives("the post published while away", missed);
    const missedId = await idOf(missed);
    const rows = await feedRows(page);
    const notes = await page.evaluate(() => [...document.querySelectorAll("#events li.note")].map((li) => li.textContent));
    const counted = await page.evaluate(() => Number(document.getElementById("count").textContent));
    await page.screenshot({ path: shot, fullPage: true });
    console.log(JSON.stringify({ typed, typedId, cleared, outside, outsideAnswer, outsideId, lastIdAtDrop,
                                 lastEventIds: link.lastEventIds, missed, missedAnswer, missedId, rows, notes,
                                 counted, errors }));
  } finally {
    await ctx.close();
    link.close();
  }
}

// examples/notifications: each notification is sent while the page's poll
// is parked on the server, and arrives as that same request's answer.
async function notifications(base, shot) {
  const ctx = await launch();
  try {
    const errors = [];
    const wire = [];   // the page's requests and responses, in the order the browser saw them
    const page = ctx.pages()[0] || (await ctx.newPage());
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("request", (r) => wire.push(`${r.method()} ${new URL(r.url()).pathname}${new URL(r.url()).search}`));
    page.on("response", (r) => wire.push(`${r.status()} ${new URL(r.url()).pathname}${new URL(r.url()).search}`));
    await page.goto(base + "/", { timeout: STEP_MS });
    const held = [];
    const sendWhileHeld = async (text, mark) => {
      // the page's current request is open; give it time to reach the server and park there
      await until(page, "a held poll", () => {
        const li = document.querySelector("#wire li");
        return li && li.className === "open" && !li.dataset.mark;
      });
      await sleep(500);
      const url = await page.evaluate((m) => {
        const li = document.querySelector("#wire li");
        li.dataset.mark = m;
        return li.textContent.split(/\s+/)[1];
      }, mark);
      if (!(await page.evaluate((m) => document.querySelector("#wire li").dataset.mark === m && document.querySelector("#wire li").className === "open", mark)))
        throw new Error("the poll was answered before anything was sent");
      await page.fill("#text", text);
      await page.click("#send button");
      await until(page, `"${text}" in the inbox`, (t) =>
        [...document.querySelectorAll("#inbox li:not(.note) span:nth-child(2)")].some((s) => s.textContent === t), text);
      await until(page, "the held request's answer in the wire log", (m) =>
        document.querySelector(`#wire li[data-mark="${m}"]`).className === "", mark);
      held.push({ url, line: await page.evaluate((m) => document.querySelector(`#wire li[data-mark="${m}"]`).textContent, mark) });
    };
    const stamp = Date.now();
    const texts = ["Backup finished " + stamp, "Disk almost full " + stamp, "Deploy started " + stamp, "Deploy done " + stamp];
    await sendWhileHeld(texts[0], "a");
    await sendWhileHeld(texts[1], "b");
    // a burst of two from outside, back to back
    const answers = [await post(base, "/notify", { text: texts[2] }), await post(base, "/notify", { text: texts[3] })];
    await until(page, "the burst in the inbox", (ts) => {
      const seen = [...document.querySelectorAll("#inbox li:not(.note) span:nth-child(2)")].map((s) => s.textContent);
      return ts.every((t) => seen.includes(t));
    }, texts.slice(2));
    // and the page is back to holding a request
    await until(page, "the next held poll", () => document.querySelector("#wire li").className === "open");
    const inbox = await page.evaluate(() => [...document.querySelectorAll("#inbox li")].map((li) => (
      li.classList.contains("note") ? { note: li.textContent }
        : { id: li.querySelector(".id").textContent, text: li.querySelector("span:nth-child(2)").textContent })));
    const wireLog = await page.evaluate(() => [...document.querySelectorAll("#wire li")].map((li) => li.textContent));
    await page.screenshot({ path: shot, fullPage: true });
    console.log(JSON.stringify({ texts, answers, held, inbox, wireLog, wire, errors }));
  } finally {
    await ctx.close();
  }
}

const [mode, base, arg] = process.argv.slice(2);
const run = { showcase, chat, reload, todo, dashboard, "live-feed": liveFeed, notifications }[mode];
if (!run || !base) {
  console.error("usage: node pages.js showcase|chat|reload|todo|dashboard|live-feed|notifications BASE_URL ARG");
  process.exit(2);
}
run(base, arg).catch((e) => {
  console.error(String(e && e.stack || e));
  process.exit(1);
});
