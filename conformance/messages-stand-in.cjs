// A local stand-in for the Anthropic Messages API, for scripts/conformance.sh.
//
//   node messages-stand-in.cjs PORT_FILE
//
// Listens on 127.0.0.1 (a free port), writes the port to PORT_FILE once it listens, and answers
// every `POST /v1/messages` with one fixed text reply ("ok", stop_reason end_turn). Anything
// else gets a Messages-API-shaped 404. It runs until SIGTERM/SIGINT (the script's trap sends
// SIGTERM).
'use strict';

const fs = require('fs');
const http = require('http');

const portFile = process.argv[2];
if (!portFile) {
  console.error('usage: messages-stand-in.cjs PORT_FILE');
  process.exit(2);
}

const REPLY = JSON.stringify({
  id: 'msg_conformance_1',
  type: 'message',
  role: 'assistant',
  model: 'conformance-stand-in',
  content: [{ type: 'text', text: 'ok' }],
  stop_reason: 'end_turn',
  stop_sequence: null,
  usage: { input_tokens: 1, output_tokens: 1 },
});
const NOT_FOUND = JSON.stringify({
  type: 'error',
  error: { type: 'not_found_error', message: 'not found' },
});

let requests = 0;
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const path = (req.url || '').split('?')[0];
    if (req.method === 'POST' && path === '/v1/messages') {
      requests += 1;
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': `req_${requests}` });
      res.end(REPLY);
    } else {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(NOT_FOUND);
    }
  });
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  fs.writeFileSync(`${portFile}.tmp`, String(port));
  fs.renameSync(`${portFile}.tmp`, portFile);
  console.error(`messages stand-in listening on http://127.0.0.1:${port}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    console.error(`messages stand-in: ${requests} request(s) answered; stopping`);
    server.close();
    process.exit(0);
  });
}
