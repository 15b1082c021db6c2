'use strict';
// Baseline peer: Node's stock http server, one process, no framework, default
// settings (keep-alive on). Usage: node node_http.js PORT
const http = require('http');

const port = Number(process.argv[2]);
const body = Buffer.from('Hello, World!');
const headers = { 'Content-Type': 'text/plain', 'Content-Length': body.length };

http.createServer((req, res) => {
  res.writeHead(200, headers);
  res.end(body);
}).listen(port, '127.0.0.1', () => {
  console.error(`node listening on http://127.0.0.1:${port}`);
});
