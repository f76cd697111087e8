// sockjs-client (npm) in Node, forced onto one transport, speaking STOMP
// 1.2 with hand-written frames. Driven by tests/tests/sockjs_node.rs:
//
//   node sockjs_stomp.js URL TRANSPORT IN_DESTINATION OUT_DESTINATION
//
// Prints one line per step: "OPEN <transport>", "READY" (subscribed to
// IN_DESTINATION, receipt seen; the test then publishes over MQTT),
// "SENT" (a SEND to OUT_DESTINATION), "MESSAGE <body>" (an MQTT publish
// arrived), "CLOSED <code>". Exits 0 after one MESSAGE, 1 on timeout or
// an early close.
'use strict';
const SockJS = require('sockjs-client');

const [url, transport, inDest, outDest] = process.argv.slice(2);
if (!outDest) {
  console.error('usage: node sockjs_stomp.js URL TRANSPORT IN_DESTINATION OUT_DESTINATION');
  process.exit(2);
}
const timer = setTimeout(() => { console.log('TIMEOUT'); process.exit(1); }, 20000);

const sock = new SockJS(url, null, { transports: [transport] });
let pending = '';
let done = false;

function frame(command, headers, body) {
  const lines = [command];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}:${v}`);
  return lines.join('\n') + '\n\n' + (body || '') + '\0';
}

sock.onopen = () => {
  console.log(`OPEN ${sock.transport}`);
  sock.send(frame('CONNECT', { 'accept-version': '1.2', host: 'portcullis', 'heart-beat': '0,0' }));
};

sock.onmessage = (e) => {
  pending += e.data;
  let nul;
  while ((nul = pending.indexOf('\0')) >= 0) {
    const f = pending.slice(0, nul).replace(/^\n+/, '');
    pending = pending.slice(nul + 1);
    const [head, ...rest] = f.split('\n\n');
    const command = head.split('\n')[0];
    const body = rest.join('\n\n');
    if (command === 'CONNECTED') {
      sock.send(frame('SUBSCRIBE', { id: 'sub-0', destination: inDest, receipt: 'r-sub' }));
    } else if (command === 'RECEIPT') {
      console.log('READY');
      sock.send(frame('SEND', { destination: outDest, 'content-type': 'text/plain' }, `hello from ${transport}`));
      console.log('SENT');
    } else if (command === 'MESSAGE') {
      console.log(`MESSAGE ${body}`);
      done = true;
      sock.send(frame('DISCONNECT', {}));
      sock.close();
    } else if (command === 'ERROR') {
      console.log(`ERROR ${f.replace(/\n/g, '|')}`);
    }
  }
};

sock.onclose = (e) => {
  console.log(`CLOSED ${e.code}`);
  clearTimeout(timer);
  process.exit(done ? 0 : 1);
};
