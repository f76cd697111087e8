// Banned: the brute-force guard's bans (GET banned), add one (POST
// banned: a client id, an address, or a username from an address), lift
// one (DELETE banned/{as}/{who}; the first press arms the button, the
// second acts).
import { api } from './api.js';
import { el } from './ui.js';
import { table, cell, writer, poll, input, select } from './listing.js';

const KINDS = [['clientid', 'client id (from any address)'], ['peerhost_username', 'username from an address (username@ip)'],
  ['peerhost', 'address (ip)']];

export function render(root, ctx) {
  const w = writer(root, ctx);
  const status = el('p', { id: 'banned-status', class: 'hint' });
  const t = table('banned', 'Active bans', ['Kind', 'Who', 'Until', '']);
  const kind = select('ban-as', KINDS);
  const who = input('ban-who', 'device-7, alice@192.0.2.7 or 192.0.2.7', 'text');
  who.required = true;
  const until = input('ban-until', '', 'datetime-local');
  const reason = input('ban-reason', 'logged, not kept', 'text');
  const add = el('button', { type: 'submit', id: 'ban-add', text: 'Ban' });
  const form = el('form', { class: 'filters', id: 'ban-form' },
    el('label', { for: 'ban-as', text: 'Ban' }), kind, el('label', { for: 'ban-who', text: 'Who' }), who,
    el('label', { for: 'ban-until', text: 'Until' }), until, el('label', { for: 'ban-reason', text: 'Reason' }), reason,
    add);
  if (!w.canWrite) {
    for (const i of [kind, who, until, reason, add]) i.disabled = true;
    add.title = 'viewers cannot ban';
  }
  root.append(el('h2', { text: 'Banned' }),
    el('p', { class: 'hint', text: 'Bans of the brute-force guard (auth.guard): a banned CONNECT is refused ' +
      '(MQTT 5: 0x8A Banned; 3.1.1: 5 Not authorized). Empty "until": the configured ban length.' }),
    form, status, t.wrap);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!w.canWrite) return;
    const body = { as: kind.value, who: who.value.trim(), by: ctx.me.username };
    if (until.value) body.until = new Date(until.value).toISOString().replace(/\.\d+Z$/, 'Z');
    if (reason.value.trim()) body.reason = reason.value.trim();
    add.disabled = true;
    try {
      const b = await api.post('banned', body);
      status.textContent = 'Banned ' + b.who + ' until ' + b.until + '.';
      status.dataset.done = b.who;
      who.value = '';
      reason.value = '';
      // The form is ready for the next ban now, not after the list
      // reloads (a slow reload swallowed the next click).
      add.disabled = false;
      await p.refresh();
    } catch (e) {
      const box = root.querySelector('.error') || root.appendChild(el('p', { class: 'error', role: 'alert' }));
      box.textContent = 'Error: ' + e.message;
      if (e.status === 401) ctx.onAuthLost();
    } finally { add.disabled = false; }
  });

  async function load(live) {
    const page = await api.get('banned?limit=100');
    if (!live()) return;
    t.body.replaceChildren(...page.data.map((b) => {
      const lift = w.button('lift:' + b.as + ':' + b.who, 'Lift', 'Confirm lift',
        { 'data-as': b.as, 'data-who': b.who }, async () => {
          await api.del('banned/' + encodeURIComponent(b.as) + '/' + encodeURIComponent(b.who));
          status.textContent = 'Lifted the ban on ' + b.who + '.';
          status.dataset.done = b.who;
          await p.refresh();
        });
      return el('tr', { 'data-as': b.as, 'data-who': b.who },
        cell('as', b.as), cell('who', b.who, b.who + (b.truncated ? ' (cut short)' : '')), cell('until', b.until),
        el('td', {}, lift));
    }));
    status.dataset.count = String(page.meta.count);
    if (!status.dataset.done) status.textContent = page.data.length + ' of ' + page.meta.count + ' active.';
  }
  const p = poll(root, ctx, load);
  return p.stop;
}
