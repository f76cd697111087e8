// Retained messages: list (GET mqtt/retainer/messages, by topic filter),
// view one with its payload as text (GET mqtt/retainer/message/{topic}),
// delete one or all (the first press arms the button, the second acts).
import { api } from './api.js';
import { el } from './ui.js';
import { table, cell, writer, poll, filters, input } from './listing.js';

const PREVIEW = 2000;

// The payload (base64) as text: UTF-8 where it is, U+FFFD elsewhere;
// shown with textContent only.
function payloadText(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
}

// A listed message's first bytes (the API sends 64) as one line of text.
function preview(m) {
  const text = payloadText(m.payload_preview || '').replace(/\s+/g, ' ');
  const short = text.length > 40 ? text.slice(0, 40) : text;
  return short + (short.length < text.length || m.payload_size > 64 ? '…' : '');
}

export function render(root, ctx) {
  const w = writer(root, ctx);
  const topic = input('retained-filter', 'topic filter, e.g. a/#');
  const status = el('p', { id: 'retained-status', class: 'hint' });
  const t = table('retained', 'Retained messages', ['Topic', 'QoS', 'Size', 'Payload', 'From', 'Expires in', '']);
  const view = el('section', { id: 'retained-view', 'aria-live': 'polite' });
  let shown = null;
  const delAll = w.button('all', 'Delete all', 'Confirm: delete all', { id: 'retained-delete-all' }, async () => {
    await api.del('mqtt/retainer/messages');
    status.textContent = 'Deleted every retained message.';
    status.dataset.done = 'all';
    shown = null;
    view.replaceChildren();
    await p.refresh();
  });
  root.append(el('h2', { text: 'Retained messages' }),
    filters('retained', [['Topic filter', topic]], () => { delete status.dataset.done; p.refresh(); }),
    el('p', {}, delAll), status, t.wrap, view);

  async function remove(tp) {
    await api.del('mqtt/retainer/message/' + encodeURIComponent(tp));
    status.textContent = 'Deleted the retained message of ' + tp + '.';
    status.dataset.done = tp;
    if (shown === tp) { shown = null; view.replaceChildren(); }
    await p.refresh();
  }

  async function showOne(tp) {
    let m;
    try {
      m = await api.get('mqtt/retainer/message/' + encodeURIComponent(tp));
    } catch (e) {
      if (e.status === 404) { shown = null; view.replaceChildren(); return; }
      throw e;
    }
    const text = payloadText(m.payload);
    const body = el('pre', { id: 'retained-payload', class: 'payload', 'data-value': text,
      text: text.length > PREVIEW ? text.slice(0, PREVIEW) + '…' : text });
    const close = el('button', { type: 'button', id: 'retained-view-close', text: 'Close' });
    close.addEventListener('click', () => { shown = null; view.replaceChildren(); });
    view.dataset.topic = m.topic;
    view.replaceChildren(el('h3', { text: m.topic }),
      el('p', { class: 'hint', 'data-size': String(m.payload_size), 'data-qos': String(m.qos),
        text: 'QoS ' + m.qos + ', ' + m.payload_size + ' bytes' + (m.from_clientid ? ', from ' + m.from_clientid : '') }),
      body, close);
  }

  async function load(live) {
    const f = topic.value.trim();
    const page = await api.get('mqtt/retainer/messages?limit=100' + (f ? '&topic=' + encodeURIComponent(f) : ''));
    if (!live()) return;
    t.body.replaceChildren(...page.data.map((m) => {
      const see = el('button', { type: 'button', class: 'show', 'data-topic': m.topic, text: 'View' });
      see.addEventListener('click', async () => { shown = m.topic; await showOne(m.topic); });
      const del = w.button('del:' + m.topic, 'Delete', 'Confirm delete', { 'data-topic': m.topic },
        () => remove(m.topic));
      return el('tr', { 'data-topic': m.topic },
        cell('topic', m.topic), cell('qos', m.qos), cell('payload_size', m.payload_size, m.payload_size + ' B'),
        cell('payload_preview', m.payload_preview, preview(m)),
        cell('from_clientid', m.from_clientid),
        cell('expiry_interval', m.expiry_interval, m.expiry_interval === null ? 'never' : m.expiry_interval + ' s'),
        el('td', { class: 'actions' }, see, ' ', del));
    }));
    status.dataset.count = String(page.meta.count);
    if (!status.dataset.done) status.textContent = page.data.length + ' of ' + page.meta.count + ' shown.';
    if (shown !== null) await showOne(shown);
  }
  const p = poll(root, ctx, load);
  return p.stop;
}
