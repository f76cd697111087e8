// Sessions: every session, connected or not (GET clients), its state,
// queue and inflight window; one session's subscriptions; kick (a
// connected client gets DISCONNECT 0x98) or discard (a disconnected one).
import { api } from './api.js';
import { el } from './ui.js';
import { table, cell, yesNo, writer, poll, filters, input, select, query } from './listing.js';

function expiry(s) {
  if (s === null || s === undefined) return 'never';
  return s === 0 ? 'with the connection' : s + ' s';
}

export function render(root, ctx) {
  const w = writer(root, ctx);
  const state = select('sessions-state', [['', 'any'], ['connected', 'connected'], ['disconnected', 'disconnected']]);
  const like = input('sessions-filter', 'client id contains…');
  const user = input('sessions-user', 'username contains…');
  const status = el('p', { id: 'sessions-status', class: 'hint' });
  const t = table('sessions', 'Sessions', ['Client id', 'Username', 'Connected', 'Session expiry', 'Subscriptions',
    'Queue', 'Inflight', '']);
  const detail = el('section', { id: 'sessions-detail', 'aria-live': 'polite' });
  let shown = null;
  root.append(el('h2', { text: 'Sessions' }),
    filters('sessions', [['State', state], ['Client id', like], ['Username', user]],
      () => { delete status.dataset.done; p.refresh(); }),
    status, t.wrap, detail);

  async function loadDetail(live) {
    if (shown === null) { detail.replaceChildren(); return; }
    let subs;
    try {
      subs = await api.get('clients/' + encodeURIComponent(shown) + '/subscriptions');
    } catch (e) {
      if (e.status === 404) { shown = null; detail.replaceChildren(); return; }
      throw e;
    }
    if (!live()) return;
    const d = table('sessions-subs', 'Subscriptions of ' + shown, ['Topic filter', 'QoS', 'No Local',
      'Retain as published', 'Retain handling']);
    d.body.replaceChildren(...subs.map((s) => el('tr', { 'data-topic': s.topic },
      cell('topic', s.topic), cell('qos', s.qos), cell('nl', s.nl), cell('rap', s.rap), cell('rh', s.rh))));
    const close = el('button', { type: 'button', id: 'sessions-detail-close', text: 'Close' });
    close.addEventListener('click', () => { shown = null; detail.replaceChildren(); });
    detail.dataset.clientid = shown;
    detail.replaceChildren(el('h3', { text: 'Subscriptions of ' + shown }), d.wrap,
      el('p', { class: 'hint', text: subs.length + ' subscriptions.' }), close);
  }

  async function load(live) {
    const q = query([['conn_state', state.value], ['like_clientid', like.value.trim()],
      ['like_username', user.value.trim()]]);
    const page = await api.get('clients?limit=100' + q);
    if (!live()) return;
    t.body.replaceChildren(...page.data.map((c) => {
      const show = el('button', { type: 'button', class: 'show', 'data-clientid': c.clientid, text: 'Subscriptions' });
      show.addEventListener('click', async () => { shown = c.clientid; await loadDetail(() => true); });
      const kick = w.button('kick:' + c.clientid, c.connected ? 'Kick' : 'Discard',
        c.connected ? 'Confirm kick' : 'Confirm discard', { 'data-clientid': c.clientid }, async () => {
          await api.del('clients/' + encodeURIComponent(c.clientid));
          status.textContent = (c.connected ? 'Kicked ' : 'Discarded ') + c.clientid + '.';
          status.dataset.done = c.clientid;
          await p.refresh();
        });
      return el('tr', { 'data-clientid': c.clientid },
        cell('clientid', c.clientid),
        cell('username', c.username),
        cell('connected', c.connected, yesNo(c.connected)),
        cell('expiry_interval', c.expiry_interval, expiry(c.expiry_interval)),
        cell('subscriptions_cnt', c.subscriptions_cnt,
          c.subscriptions_cnt + (c.subscriptions_max !== null ? ' / ' + c.subscriptions_max : '')),
        cell('mqueue_len', c.mqueue_len, c.mqueue_len + ' / ' + c.mqueue_max +
          (c.mqueue_dropped ? ' (' + c.mqueue_dropped + ' dropped)' : '')),
        cell('inflight_cnt', c.inflight_cnt, c.inflight_cnt + ' / ' + c.inflight_max),
        el('td', { class: 'actions' }, show, ' ', kick));
    }));
    status.dataset.count = String(page.meta.count);
    if (!status.dataset.done) status.textContent = page.data.length + ' of ' + page.meta.count + ' shown.';
    await loadDetail(live);
  }
  const p = poll(root, ctx, load);
  return p.stop;
}
