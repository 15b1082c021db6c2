// The showcase page: one panel per way of talking. Each panel logs what
// happens on the wire, so the differences between them are visible.
"use strict";

const $ = (id) => document.getElementById(id);
const nameOf = () => ($("name").value.trim() || "guest").slice(0, 40);
const clock = () => new Date().toLocaleTimeString();

// Appends a line to a panel's wire log (newest first) and keeps it short.
function log(panel, html, cls) {
  const li = document.createElement("li");
  if (cls) li.className = cls;
  li.innerHTML = html;
  const list = $(panel + "-wire");
  list.prepend(li);
  while (list.children.length > 60) list.lastChild.remove();
  return li;
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function status(panel, text, ok) {
  const el = $(panel + "-status");
  el.textContent = text;
  el.className = "status " + (ok === true ? "ok" : ok === false ? "bad" : "");
}

// A hub message's data is JSON {from, text, at}; show it with its id.
function showMessage(panel, id, data, how) {
  let m;
  try { m = JSON.parse(data); } catch (e) { m = { from: "?", text: data }; }
  const li = log(panel, `<span class="id">#${esc(id)}</span> <b>${esc(m.from)}</b>: ${esc(m.text)}
    <div class="meta">${esc(how)} · ${clock()}</div>`);
  li.dataset.id = id;
  li.dataset.text = m.text;
}

async function publish(panel, text) {
  const t0 = performance.now();
  const r = await fetch("/api/publish", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ from: nameOf(), text }),
  });
  const body = await r.json().catch(() => ({}));
  const ms = (performance.now() - t0).toFixed(1);
  log(panel, `→ POST /api/publish <div class="meta">← ${r.status} ${esc(JSON.stringify(body))} in ${ms} ms</div>`, "sys");
}

// 1. Plain request --------------------------------------------------------
$("ask").addEventListener("click", async () => {
  const t0 = performance.now();
  status("plain", "waiting for the answer…");
  const r = await fetch("/api/time");
  const body = await r.json();
  const ms = (performance.now() - t0).toFixed(1);
  status("plain", `last answer: ${r.status} in ${ms} ms`, true);
  log("plain", `→ GET /api/time<div class="meta">← ${r.status}, ${r.headers.get("content-length")} bytes in ${ms} ms:
    uptime ${body.uptime.toFixed(1)} s, last message id ${body.last_id}</div>`);
});

// 2. Server-Sent Events -----------------------------------------------------
let sseEvents = 0;
function startSSE() {
  const es = new EventSource("/sse");
  es.onopen = () => { status("sse", "connected: one open response, the server writes events into it", true); log("sse", "connection opened (GET /sse, text/event-stream)", "sys"); };
  es.onmessage = (e) => { sseEvents++; showMessage("sse", e.lastEventId, e.data, `event ${sseEvents} on the stream, id: ${e.lastEventId}`); };
  es.onerror = () => { status("sse", "disconnected: the browser reconnects by itself with Last-Event-ID", false); log("sse", "connection lost; EventSource will reconnect and resume", "sys"); };
}

// 3. WebSocket --------------------------------------------------------------
let ws = null, wsFrames = 0, wsRetry = 500;
function startWS() {
  ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.onopen = () => { wsRetry = 500; status("ws", "connected: one connection, frames both ways", true); log("ws", "handshake done (HTTP 101 Switching Protocols)", "sys"); };
  ws.onmessage = (e) => {
    wsFrames++;
    const env = JSON.parse(e.data);
    if (env.error) { log("ws", `← frame: ${esc(env.error)}`, "sys"); return; }
    showMessage("ws", env.id, env.data, `← frame ${wsFrames} (${e.data.length} bytes) from channel ${env.channel}`);
  };
  ws.onclose = (e) => {
    status("ws", `closed (${e.code}); reconnecting in ${wsRetry} ms`, false);
    log("ws", `connection closed with code ${e.code}`, "sys");
    setTimeout(startWS, wsRetry);
    wsRetry = Math.min(wsRetry * 2, 8000);
  };
}

// 4. Long polling -------------------------------------------------------------
async function pollLoop() {
  let since = null, polls = 0;
  for (;;) {
    polls++;
    const url = since === null ? "/poll" : `/poll?since=${since}`;
    status("poll", `request ${polls} held by the server, waiting for news…`, true);
    const t0 = performance.now();
    try {
      const r = await fetch(url);
      const body = await r.json();
      const ms = Math.round(performance.now() - t0);
      log("poll", `→ GET ${esc(url)}<div class="meta">← ${r.status} after being held ${body.held_ms} ms
        (round trip ${ms} ms): ${body.messages.length} message(s)${body.missed ? `, ${body.missed} missed` : ""}</div>`, "sys");
      for (const m of body.messages) showMessage("poll", m.id, m.data, `in the answer to request ${polls}`);
      since = body.last_id;
    } catch (e) {
      status("poll", "the server is unreachable; retrying in 2 s", false);
      await new Promise((ok) => setTimeout(ok, 2000));
    }
  }
}

// Sending ---------------------------------------------------------------------
for (const form of document.querySelectorAll("form.send")) {
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const input = form.querySelector("input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    const via = form.dataset.via;
    if (via === "ws") {
      if (ws && ws.readyState === WebSocket.OPEN) {
        const frame = JSON.stringify({ from: nameOf(), text });
        ws.send(frame);
        log("ws", `→ frame (${frame.length} bytes): ${esc(text)}`, "sys");
      } else {
        log("ws", "not connected: the frame was not sent", "sys");
      }
    } else {
      publish(via, text);
    }
  });
}

startSSE();
startWS();
pollLoop();
