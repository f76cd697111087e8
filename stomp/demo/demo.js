// The STOMP demo page: stomp.js (window.StompJs) over sockjs-client
// (window.SockJS), both vendored next to this file and loaded by
// index.html before this module runs.
//
// Everything a peer sends (bodies, destinations, headers, error texts) is
// put in the page as text (textContent, attribute values), never parsed as
// markup. The state the end-to-end test reads is kept in data-* attributes
// of #demo: data-state (disconnected | connecting | connected),
// data-transport (the SockJS transport in use), data-received (MESSAGE
// frames received), data-last-body / data-last-destination (of the newest
// one), data-errors / data-last-error (ERROR frames and failures).

const LOG_MAX = 500;

const $ = (id) => document.getElementById(id);
const root = $('demo');

/** An element with text content and attributes (values set as text). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

let client = null;      // the StompJs.Client while active
let sockjsPath = null;  // from config.json
let received = 0;
let errors = 0;
let subCounter = 0;
let receiptCounter = 0;
const subscriptions = new Map(); // id → { destination, handle, li }

function setState(state, transport) {
  root.dataset.state = state;
  root.dataset.transport = transport || '';
  $('state').textContent = state;
  $('transport-used').textContent = transport ? `over ${transport}` : '';
  const connected = state === 'connected';
  $('connect').disabled = state !== 'disconnected' || sockjsPath === null;
  $('disconnect').disabled = state === 'disconnected';
  $('subscribe').disabled = !connected;
  $('send').disabled = !connected;
  for (const id of ['login', 'passcode', 'transport']) $(id).disabled = state !== 'disconnected';
}

function showError(text) {
  errors += 1;
  root.dataset.errors = String(errors);
  root.dataset.lastError = text;
  const list = $('errors');
  list.prepend(el('li', { text: `${new Date().toLocaleTimeString()} ${text}` }));
  while (list.children.length > 20) list.lastElementChild.remove();
}

function logEntry(dir, destination, body, contentType) {
  const log = $('log');
  const li = el(
    'li',
    { class: `entry ${dir}`, 'data-dir': dir, 'data-destination': destination },
    el('span', { class: 'when', text: new Date().toLocaleTimeString() }),
    el('span', { class: 'dir', text: dir === 'in' ? '←' : '→' }),
    el('span', { class: 'destination', text: destination }),
  );
  if (contentType) li.append(el('span', { class: 'ctype', text: contentType }));
  li.append(el('pre', { class: 'body', text: body }));
  log.prepend(li);
  while (log.children.length > LOG_MAX) log.lastElementChild.remove();
  return li;
}

function clearSubscriptions() {
  for (const { li } of subscriptions.values()) li.remove();
  subscriptions.clear();
}

function connect() {
  const login = $('login').value;
  const passcode = $('passcode').value;
  const transport = $('transport').value;
  const url = location.origin + sockjsPath;
  const options = transport === 'auto' ? {} : { transports: [transport] };
  let sock = null;
  const c = new window.StompJs.Client({
    webSocketFactory: () => {
      sock = new window.SockJS(url, null, options);
      return sock;
    },
    connectHeaders: { login, passcode },
    reconnectDelay: 0, // a refusal stays a refusal; Connect again by hand
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
  });
  c.onConnect = (frame) => {
    setState('connected', sock ? sock.transport : '');
    root.dataset.version = frame.headers.version || '';
  };
  c.onStompError = (frame) => {
    const message = frame.headers.message || 'ERROR';
    const body = (frame.body || '').trim();
    showError(body && body !== message ? `${message}: ${body}` : message);
  };
  c.onWebSocketError = () => {
    if (root.dataset.state === 'connecting') showError(`cannot reach ${url}`);
  };
  c.onWebSocketClose = (evt) => {
    if (client !== c) return;
    client = null;
    clearSubscriptions();
    setState('disconnected');
    if (evt && evt.code && evt.code !== 1000) {
      $('endpoint').textContent = `(closed: ${evt.code}${evt.reason ? ' ' + evt.reason : ''})`;
    } else {
      $('endpoint').textContent = '(closed)';
    }
    // A client that closes itself stays inactive (no reconnection).
    c.deactivate();
  };
  client = c;
  $('endpoint').textContent = url;
  setState('connecting');
  c.activate();
}

function disconnect() {
  if (client) client.deactivate();
}

function subscribe() {
  const destination = $('sub-destination').value.trim();
  if (!client || !destination) return;
  subCounter += 1;
  receiptCounter += 1;
  const id = `sub-${subCounter}`;
  const receipt = `r-${receiptCounter}`;
  const li = el(
    'li',
    { 'data-id': id, 'data-destination': destination, 'data-active': 'false' },
    el('span', { class: 'destination', text: destination }),
  );
  const button = el('button', { type: 'button', class: 'unsubscribe', text: 'Unsubscribe' });
  li.append(' ', button);
  client.watchForReceipt(receipt, () => {
    li.dataset.active = 'true';
  });
  const handle = client.subscribe(destination, onMessage, { id, receipt });
  button.addEventListener('click', () => {
    subscriptions.delete(id);
    li.remove();
    if (client) handle.unsubscribe();
  });
  subscriptions.set(id, { destination, handle, li });
  $('subscriptions').append(li);
}

function onMessage(message) {
  received += 1;
  const destination = message.headers.destination || '';
  root.dataset.received = String(received);
  root.dataset.lastBody = message.body;
  root.dataset.lastDestination = destination;
  logEntry('in', destination, message.body, message.headers['content-type']);
}

function send() {
  const destination = $('send-destination').value.trim();
  if (!client || !destination) return;
  const body = $('send-body').value;
  const contentType = $('send-content-type').value.trim();
  const headers = contentType ? { 'content-type': contentType } : {};
  client.publish({ destination, body, headers });
  logEntry('out', destination, body, contentType);
}

async function loadConfig() {
  try {
    const r = await fetch('config.json', { cache: 'no-store' });
    if (!r.ok) throw new Error(`config.json: HTTP ${r.status}`);
    const cfg = await r.json();
    if (typeof cfg.sockjs_path !== 'string' || !cfg.sockjs_path.startsWith('/')) {
      throw new Error('config.json: no sockjs_path');
    }
    sockjsPath = cfg.sockjs_path;
    root.dataset.config = 'loaded';
    $('endpoint').textContent = location.origin + sockjsPath;
  } catch (e) {
    root.dataset.config = 'failed';
    showError(String(e.message || e));
  }
  setState('disconnected');
}

function onSubmit(id, action) {
  $(id).addEventListener('submit', (e) => {
    e.preventDefault();
    action();
  });
}

onSubmit('connect-form', connect);
onSubmit('subscribe-form', subscribe);
onSubmit('send-form', send);
$('disconnect').addEventListener('click', disconnect);
$('clear-log').addEventListener('click', () => $('log').replaceChildren());
loadConfig();
