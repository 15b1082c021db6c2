'use strict';
// Node peer of bench/apps/pubsub.lua for the "sse" and "longpoll" sections:
// Node's stock `http` module, one process, no framework, same endpoints and
// semantics. Usage: node node_pubsub.js PORT
//
//   GET  /events           SSE stream of channel "bench" (id: + data:, resumes
//                          from Last-Event-ID / ?lastEventId= out of history)
//   GET  /poll?since=ID    long poll: JSON list of {id, data, kind}; answers at
//                          once with retained messages after ID, else waits for
//                          the next one, [] after 30 s
//   POST /publish?data=D   publishes D; answers with the message id
//   GET  /                 "Hello, World!" (readiness probe)
//
// History: the last BENCH_HISTORY messages (default 100, as moonwire's hub).
// Like moonwire, a publish encodes the SSE event once and writes the same
// bytes to every stream, and encodes the long-poll answer once for every
// parked request (they are all waiting for exactly that message).
const http = require('http');

const port = Number(process.argv[2]);
const HISTORY = Number(process.env.BENCH_HISTORY || 100);
const POLL_TIMEOUT_MS = 30000;
const HEARTBEAT_MS = 15000;

let lastId = 0;
const history = [];            // oldest first, at most HISTORY
const streams = new Set();     // open SSE responses
const waiters = new Set();     // parked long polls: { res, timer }

function query(req) {
  const q = req.url.indexOf('?');
  return new URLSearchParams(q < 0 ? '' : req.url.slice(q + 1));
}

function sseEvent(msg) {
  // one data: line per line of the message, as the event-stream format wants
  return Buffer.from(`id: ${msg.id}\ndata: ${msg.data.split(/\r\n|\r|\n/).join('\ndata: ')}\n\n`);
}

// Retained messages after `since` (all retained when since is older than the
// history or above lastId, as DESIGN.md's hub does).
function after(since) {
  if (since === null || since > lastId) return history.slice();
  const first = history.length ? history[0].id : lastId + 1;
  return history.slice(Math.max(0, since + 1 - first));
}

function publish(data) {
  const msg = { id: ++lastId, data, kind: 'text' };
  history.push(msg);
  if (history.length > HISTORY) history.shift();
  if (streams.size) {
    const ev = sseEvent(msg);
    for (const res of streams) res.write(ev);
  }
  if (waiters.size) {
    const body = JSON.stringify([msg]);
    const parked = [...waiters];
    waiters.clear();
    for (const w of parked) {
      clearTimeout(w.timer);
      sendJSON(w.res, body);
    }
  }
  return msg.id;
}

function sendJSON(res, body) {
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function sendText(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function events(req, res) {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache',
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders(); // Node holds the head back until the first write otherwise
  const lei = req.headers['last-event-id'] || query(req).get('lastEventId');
  if (lei !== null && lei !== undefined && /^\d+$/.test(lei)) {
    for (const m of after(Number(lei))) res.write(sseEvent(m));
  }
  streams.add(res);
  res.on('close', () => streams.delete(res));
}

function poll(req, res) {
  const s = query(req).get('since');
  const since = s !== null && /^\d+$/.test(s) ? Number(s) : null;
  if (since !== null) {
    const due = after(since);
    if (due.length) return sendJSON(res, JSON.stringify(due));
  }
  const w = { res, timer: null };
  w.timer = setTimeout(() => {
    waiters.delete(w);
    sendJSON(res, '[]');
  }, POLL_TIMEOUT_MS);
  waiters.add(w);
  res.on('close', () => {
    if (waiters.delete(w)) clearTimeout(w.timer);
  });
}

const server = http.createServer((req, res) => {
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  if (req.method === 'GET' && path === '/events') return events(req, res);
  if (req.method === 'GET' && path === '/poll') return poll(req, res);
  if (req.method === 'POST' && path === '/publish') {
    const data = query(req).get('data');
    if (data === null) return sendText(res, 400, 'data missing');
    return sendText(res, 200, String(publish(data)));
  }
  if (req.method === 'GET' && path === '/') return sendText(res, 200, 'Hello, World!');
  sendText(res, 404, 'Not Found');
});
// Streams and parked polls outlive Node's default request/keep-alive timers.
server.requestTimeout = 0;
server.keepAliveTimeout = 60000;
server.headersTimeout = 10000;
server.maxConnections = Infinity;

setInterval(() => {
  for (const res of streams) res.write(':\n\n');
}, HEARTBEAT_MS).unref();

server.listen(port, '127.0.0.1', 1024, () => {
  console.error(`node listening on http://127.0.0.1:${port}`);
});
process.on('SIGTERM', () => process.exit(0));
