// WebSocket client: an MQTT client in the page (the vendored MQTT.js
// browser build, mqtt.esm.js, loaded on the first connect) that connects
// to the broker's WebSocket listener, subscribes, publishes, and logs what
// it sees. The broker authenticates it like any client (the admin session
// plays no part), so viewers may use it too.
import { api } from './api.js';
import { el, failed } from './ui.js';

// The log keeps the newest entries only.
export const MAX_LOG = 500;

let mqttModule = null;
async function loadMqtt() {
  if (!mqttModule) mqttModule = (await import('./mqtt.esm.js')).default;
  return mqttModule;
}

// The default URL: this page's host, the port and path of the first
// WebSocket listener the API reports (wss first on an https page).
export function defaultUrl(listeners, loc) {
  const secure = loc.protocol === 'https:';
  const ws = (listeners || []).filter((l) => (l.type === 'ws' || l.type === 'wss') && l.running !== false);
  ws.sort((a, b) => (a.type === (secure ? 'wss' : 'ws') ? -1 : 0) - (b.type === (secure ? 'wss' : 'ws') ? -1 : 0));
  const l = ws[0];
  if (!l) return (secure ? 'wss://' : 'ws://') + loc.hostname + ':8083/mqtt';
  const port = String(l.bind).split(':').pop();
  const host = loc.hostname.includes(':') ? '[' + loc.hostname + ']' : loc.hostname;
  return l.type + '://' + host + ':' + port + (l.websocket_path || '/mqtt');
}

function field(id, label, input) {
  input.id = id;
  return el('div', { class: 'field' }, el('label', { for: id, text: label }), input);
}

function qosSelect(id) {
  return el('select', { id }, ...[0, 1, 2].map((q) => el('option', { value: String(q), text: 'QoS ' + q })));
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

export function render(root, ctx) {
  const url = el('input', { type: 'text', spellcheck: 'false', autocomplete: 'off' });
  const clientId = el('input', { type: 'text', spellcheck: 'false', autocomplete: 'off' });
  clientId.value = 'dashboard-' + Math.random().toString(16).slice(2, 10);
  const username = el('input', { type: 'text', autocomplete: 'off' });
  const password = el('input', { type: 'password', autocomplete: 'new-password' });
  const version = el('select', {}, el('option', { value: '5', text: 'MQTT 5' }), el('option', { value: '4', text: 'MQTT 3.1.1' }));
  const connectBtn = el('button', { type: 'submit', id: 'ws-connect', text: 'Connect' });
  const disconnectBtn = el('button', { type: 'button', id: 'ws-disconnect', text: 'Disconnect' });
  disconnectBtn.disabled = true;
  const state = el('p', { id: 'ws-state', class: 'hint', role: 'status', 'data-state': 'disconnected', text: 'Not connected.' });
  const connForm = el('form', { id: 'ws-conn-form', class: 'ws-form' },
    field('ws-url', 'Broker URL', url), field('ws-clientid', 'Client id', clientId),
    field('ws-username', 'Username (optional)', username), field('ws-password', 'Password (optional)', password),
    field('ws-version', 'Protocol', version),
    el('div', { class: 'field buttons' }, connectBtn, disconnectBtn));

  const subFilter = el('input', { type: 'text', spellcheck: 'false', required: '' });
  const subQos = qosSelect('ws-sub-qos');
  const subBtn = el('button', { type: 'submit', id: 'ws-subscribe', text: 'Subscribe' });
  const subs = el('ul', { id: 'ws-subs', class: 'ws-subs' });
  const subForm = el('form', { id: 'ws-sub-form', class: 'ws-form' },
    field('ws-sub-filter', 'Topic filter', subFilter),
    el('div', { class: 'field' }, el('label', { for: 'ws-sub-qos', text: 'QoS' }), subQos),
    el('div', { class: 'field buttons' }, subBtn));

  const pubTopic = el('input', { type: 'text', spellcheck: 'false', required: '' });
  const pubPayload = el('textarea', { rows: '2', spellcheck: 'false' });
  const pubQos = qosSelect('ws-pub-qos');
  const pubRetain = el('input', { type: 'checkbox', id: 'ws-pub-retain' });
  const pubBtn = el('button', { type: 'submit', id: 'ws-publish', text: 'Publish' });
  const pubForm = el('form', { id: 'ws-pub-form', class: 'ws-form' },
    field('ws-pub-topic', 'Topic', pubTopic), field('ws-pub-payload', 'Payload (text, sent as UTF-8)', pubPayload),
    el('div', { class: 'field' }, el('label', { for: 'ws-pub-qos', text: 'QoS' }), pubQos),
    el('div', { class: 'field check' }, pubRetain, el('label', { for: 'ws-pub-retain', text: 'Retain' })),
    el('div', { class: 'field buttons' }, pubBtn));

  const log = el('ol', { id: 'ws-log', class: 'ws-log', reversed: '' });
  const clearBtn = el('button', { type: 'button', id: 'ws-log-clear', class: 'secondary', text: 'Clear' });
  const count = el('span', { id: 'ws-log-count', class: 'hint', 'data-count': '0', text: '0 messages' });

  root.append(el('h2', { text: 'WebSocket client' }),
    el('p', { class: 'hint', text: 'An MQTT client in this page (MQTT.js over WebSocket). The broker authenticates it like any other client.' }),
    el('section', { 'aria-labelledby': 'ws-h-conn' }, el('h3', { id: 'ws-h-conn', text: 'Connection' }), connForm, state),
    el('div', { class: 'ws-cols' },
      el('section', { 'aria-labelledby': 'ws-h-sub' }, el('h3', { id: 'ws-h-sub', text: 'Subscribe' }), subForm, subs),
      el('section', { 'aria-labelledby': 'ws-h-pub' }, el('h3', { id: 'ws-h-pub', text: 'Publish' }), pubForm)),
    el('section', { 'aria-labelledby': 'ws-h-log' },
      el('h3', { id: 'ws-h-log', text: 'Messages' }), el('div', { class: 'filters' }, count, clearBtn), log));

  let client = null;
  let stopped = false;

  function setState(s, text) {
    state.dataset.state = s;
    state.textContent = text;
    const up = s === 'connected';
    connectBtn.disabled = s === 'connecting' || up;
    disconnectBtn.disabled = !client;
    subBtn.disabled = !up;
    pubBtn.disabled = !up;
  }
  setState('disconnected', 'Not connected.');

  function addLog(dir, topic, bytes, qos, retain) {
    const text = new TextDecoder('utf-8').decode(bytes);
    const li = el('li', { class: 'ws-msg ws-' + dir, 'data-dir': dir, 'data-topic': topic, 'data-qos': String(qos),
      'data-retain': retain ? 'true' : 'false', 'data-payload': text, 'data-hex': hex(bytes), 'data-bytes': String(bytes.length) },
    el('span', { class: 'ws-meta', text: (dir === 'in' ? '← ' : '→ ') + new Date().toLocaleTimeString() + ' QoS ' + qos + (retain ? ' retained' : '') }),
    el('code', { class: 'ws-topic', text: topic }),
    el('pre', { class: 'ws-payload', text }));
    log.prepend(li);
    while (log.children.length > MAX_LOG) log.lastElementChild.remove();
    count.dataset.count = String(log.children.length);
    count.textContent = log.children.length + ' messages' + (log.children.length === MAX_LOG ? ' (the newest ' + MAX_LOG + ')' : '');
  }

  function end() {
    if (client) { const c = client; client = null; c.end(true); }
    subs.replaceChildren();
  }

  connForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    end();
    setState('connecting', 'Connecting to ' + url.value + '…');
    let mqtt;
    try {
      mqtt = await loadMqtt();
    } catch (e) {
      setState('error', 'Could not load MQTT.js: ' + e.message);
      return;
    }
    if (stopped) return;
    const opts = { clientId: clientId.value, protocolVersion: Number(version.value), clean: true,
      reconnectPeriod: 0, connectTimeout: 10000, keepalive: 30,
      // setInterval, not worker-timers: those start a Worker from a blob:
      // URL, which the CSP (no worker-src) rightly refuses.
      timerVariant: 'native' };
    if (username.value) opts.username = username.value;
    if (password.value) opts.password = password.value;
    let c;
    try {
      c = mqtt.connect(url.value, opts);
    } catch (e) {
      setState('error', 'Cannot connect: ' + e.message);
      return;
    }
    client = c;
    setState('connecting', 'Connecting to ' + url.value + '…');
    c.on('connect', () => { if (client === c) setState('connected', 'Connected to ' + url.value + ' as ' + opts.clientId + '.'); });
    c.on('message', (topic, payload, packet) => {
      if (client === c) addLog('in', topic, new Uint8Array(payload), packet.qos, packet.retain);
    });
    c.on('error', (e) => { if (client === c) setState('error', 'Error: ' + e.message); });
    c.on('close', () => {
      if (client !== c) return;
      client = null;
      subs.replaceChildren();
      const was = state.dataset.state;
      if (was === 'connected') setState('disconnected', 'Disconnected.');
      else if (was === 'error') setState('error', state.textContent);
      // Closed before a CONNACK: a wrong URL, a refused origin, no listener.
      else setState('error', 'Could not connect to ' + url.value + ' (closed before the broker answered).');
    });
  });

  disconnectBtn.addEventListener('click', () => { end(); setState('disconnected', 'Disconnected.'); });

  subForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const c = client;
    if (!c) return;
    const filter = subFilter.value;
    const qos = Number(subQos.value);
    c.subscribe(filter, { qos }, (err, granted) => {
      if (client !== c) return;
      if (err) { setState('connected', 'Subscribe failed: ' + err.message); return; }
      const g = granted && granted[0] ? granted[0].qos : qos;
      const ok = g < 128;
      subs.append(el('li', { 'data-filter': filter, 'data-granted': String(g), class: ok ? '' : 'error' },
        el('code', { text: filter }), el('span', { class: 'hint', text: ok ? ' granted QoS ' + g : ' refused (0x' + g.toString(16) + ')' })));
    });
  });

  pubForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const c = client;
    if (!c) return;
    const topic = pubTopic.value;
    const bytes = new TextEncoder().encode(pubPayload.value);
    const qos = Number(pubQos.value);
    const retain = pubRetain.checked;
    c.publish(topic, bytes, { qos, retain }, (err) => {
      if (client !== c) return;
      if (err) { setState('connected', 'Publish failed: ' + err.message); return; }
      addLog('out', topic, bytes, qos, retain);
    });
  });

  clearBtn.addEventListener('click', () => {
    log.replaceChildren();
    count.dataset.count = '0';
    count.textContent = '0 messages';
  });

  api.get('listeners').then((ls) => {
    if (!stopped && !url.value) url.value = defaultUrl(ls, location);
  }, (e) => {
    if (stopped) return;
    if (!url.value) url.value = defaultUrl([], location);
    failed(root, ctx, e);
  });

  return () => { stopped = true; end(); };
}
