// Echo round trips through Node's ws package against a moonwire server.
//
//   node ws_echo.js URL MODE
//
// MODE: "plain" (no permessage-deflate), "deflate" (ws's default offer),
// or "deflate-small" (server_max_window_bits=10, no context takeover).
// Prints one JSON line: the negotiated extension, each message's check,
// and the close the server answered with; exits 0 when it got that far,
// 2 on a timeout or a connection error (run by test_ws_clients.py).
'use strict';
const crypto = require('crypto');
const WebSocket = require('ws');

const [url, mode] = process.argv.slice(2);
const pmd = {
  plain: false,
  deflate: true,
  'deflate-small': { serverMaxWindowBits: 10, serverNoContextTakeover: true, threshold: 0 },
}[mode];
if (pmd === undefined) {
  console.error('usage: node ws_echo.js URL plain|deflate|deflate-small');
  process.exit(2);
}

const timer = setTimeout(() => {
  console.error('timed out');
  process.exit(2);
}, 30000);

const big = 'moonwire says hello; '.repeat(50000); // ~1 MB, compresses well
const cases = [
  { name: 'text', data: 'hello' },
  { name: 'unicode', data: 'caf\u00e9 \u2713 \u{1F600}' },
  { name: 'empty', data: '' },
  { name: 'binary', data: crypto.randomBytes(1000), binary: true },
  { name: 'text 1 MB', data: big },
  { name: 'binary 1 MB', data: crypto.randomBytes(1 << 20), binary: true },
  { name: 'fragmented', fragments: ['frag', 'mented ', 'text \u00e9'] },
];

const ws = new WebSocket(url, { perMessageDeflate: pmd });
const results = [];
let i = 0;

function sendCase(c) {
  if (c.fragments) {
    c.fragments.forEach((f, k) => ws.send(f, { fin: k === c.fragments.length - 1 }));
  } else {
    ws.send(c.data, { binary: !!c.binary });
  }
}

ws.on('open', () => sendCase(cases[0]));
ws.on('message', (data, isBinary) => {
  const c = cases[i];
  const want = c.fragments ? Buffer.from(c.fragments.join('')) : Buffer.from(c.data);
  results.push({ name: c.name, ok: isBinary === !!c.binary && Buffer.compare(data, want) === 0,
                 bytes: data.length });
  i += 1;
  if (i < cases.length) sendCase(cases[i]);
  else ws.close(1000, 'done');
});
ws.on('close', (code, reason) => {
  clearTimeout(timer);
  console.log(JSON.stringify({
    extensions: ws.extensions, results, close: { code, reason: reason.toString() },
  }));
  process.exit(0);
});
ws.on('error', (err) => {
  console.error(`error: ${err.message}`);
  process.exit(2);
});
