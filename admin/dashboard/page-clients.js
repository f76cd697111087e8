// Clients: filter, list, kick.
import { api } from './api.js';
import { el, failed, POLL_MS } from './ui.js';

export function render(root, ctx) {
  const canWrite = ctx.me.role === 'administrator';
  const filter = el('input', { id: 'clients-filter', type: 'search', placeholder: 'client id contains…' });
  const form = el('form', { class: 'filters', role: 'search' },
    el('label', { for: 'clients-filter', text: 'Filter' }), filter,
    el('button', { type: 'submit', text: 'Apply' }));
  const status = el('p', { id: 'clients-status', class: 'hint' });
  const body = el('tbody', { id: 'clients-rows' });
  const table = el('table', { id: 'clients-table' },
    el('caption', { class: 'visually-hidden', text: 'Connected and disconnected clients' }),
    el('thead', {}, el('tr', {}, ...['Client id', 'Username', 'Address', 'Protocol', 'Connected', ''].map((h) => el('th', { scope: 'col', text: h })))),
    body);
  root.append(el('h2', { text: 'Clients' }), form, status, el('div', { class: 'scroll' }, table));
  let stopped = false;

  async function load() {
    try {
      const q = filter.value.trim();
      const page = await api.get('clients?limit=100' + (q ? '&like_clientid=' + encodeURIComponent(q) : ''));
      if (stopped) return;
      const rows = page.data.map((c) => {
        const kick = el('button', { type: 'button', class: 'kick', 'data-clientid': c.clientid, text: 'Kick' });
        if (!canWrite) { kick.disabled = true; kick.title = 'viewers cannot kick'; }
        kick.addEventListener('click', async () => {
          if (kick.dataset.armed !== 'yes') {
            kick.dataset.armed = 'yes';
            kick.textContent = 'Confirm kick';
            return;
          }
          kick.disabled = true;
          try {
            await api.del('clients/' + encodeURIComponent(c.clientid));
            status.textContent = 'Kicked ' + c.clientid + '.';
            await load();
          } catch (e) { failed(root, ctx, e); kick.disabled = false; }
        });
        const tr = el('tr', { 'data-clientid': c.clientid },
          el('td', { text: c.clientid }),
          el('td', { text: c.username ?? '' }),
          el('td', { text: c.ip_address ? c.ip_address + ':' + (c.port ?? '') : '' }),
          el('td', { text: c.protocol === 'stomp' ? 'STOMP ' + c.protocol_version : (c.proto_ver ? 'MQTT ' + c.proto_ver : '') }),
          el('td', { text: c.connected ? 'yes' : 'no' }),
          el('td', {}, kick));
        return tr;
      });
      body.replaceChildren(...rows);
      status.dataset.count = String(page.meta && page.meta.count !== undefined ? page.meta.count : rows.length);
      if (!status.textContent.startsWith('Kicked')) status.textContent = rows.length + ' shown.';
    } catch (e) {
      failed(root, ctx, e);
    }
  }
  form.addEventListener('submit', (ev) => { ev.preventDefault(); status.textContent = ''; load(); });
  load();
  const timer = setInterval(load, POLL_MS * 2);
  return () => { stopped = true; clearInterval(timer); };
}
