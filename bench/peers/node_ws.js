// Node peer of bench/apps/ws.lua for the "ws" section (bench/ws.sh): Node's
// http module plus the `ws` package (tests/node/node_modules/ws), one process.
//
//   GET  /ws               WebSocket: echoes every message back (same kind);
//                          every socket receives what /publish broadcasts
//   POST /publish?data=D   sends D as a text message to every open socket
//                          (the usual ws broadcast: wss.clients.forEach);
//                          answers with a running id
//   GET  /                 "Hello, World!" (readiness probe)
//
// usage: node node_ws.js PORT
'use strict';
const http = require('http');
const path = require('path');
const WS_DIR = process.env.BENCH_NODE_WS ||
  path.join(__dirname, '..', '..', 'tests', 'node', 'node_modules', 'ws');
const { WebSocketServer, WebSocket } = require(WS_DIR);

const port = Number(process.argv[2] || 8080);
let nextId = 1;

const server = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  if (req.method === 'GET' && u.pathname === '/') {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 13 });
    res.end('Hello, World!');
    return;
  }
  if (req.method === 'POST' && u.pathname === '/publish') {
    const data = u.searchParams.get('data');
    req.resume();
    if (data === null) {
      res.writeHead(400);
      res.end('data missing');
      return;
    }
    const buf = Buffer.from(data); // converted once, sent to everyone
    for (const ws of wss.clients) {
      if (ws.readyState === WebSocket.OPEN) ws.send(buf, { binary: false });
    }
    const id = String(nextId++);
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(id) });
    res.end(id);
    return;
  }
  res.writeHead(404);
  res.end();
});

// perMessageDeflate is off by default on ws 8 servers; said explicitly, as
// moonwire's bench app does not turn compression on either.
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: true });

server.on('upgrade', (req, socket, head) => {
  if (new URL(req.url, 'http://x').pathname !== '/ws') {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => {});
  });
});

server.listen(port, '127.0.0.1');
const stop = () => { server.close(); for (const ws of wss.clients) ws.terminate(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
