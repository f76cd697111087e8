// Listeners: each MQTT listener (GET listeners), its address, state,
// connections, refusals, and its auth and ACL chains.
import { api } from './api.js';
import { el } from './ui.js';
import { table, cell, yesNo, poll } from './listing.js';

export function render(root, ctx) {
  const status = el('p', { id: 'listeners-status', class: 'hint' });
  const t = table('listeners', 'Listeners', ['Id', 'Type', 'Bind', 'Running', 'Connections', 'Refused',
    'Handshake failures', 'Auth chain', 'ACL chain']);
  root.append(el('h2', { text: 'Listeners' }), status, t.wrap);

  async function load(live) {
    const rows = await api.get('listeners');
    if (!live()) return;
    t.body.replaceChildren(...rows.map((l) => el('tr', { 'data-id': l.id },
      cell('id', l.id), cell('type', l.type), cell('bind', l.bind), cell('running', l.running, yesNo(l.running)),
      cell('current_connections', l.current_connections, l.current_connections + ' / ' + l.max_connections),
      cell('refused', l.refused), cell('handshake_failures', l.handshake_failures),
      cell('auth_chain', l.auth_chain), cell('acl_chain', l.acl_chain))));
    status.dataset.count = String(rows.length);
    status.textContent = rows.length + ' listeners.';
  }
  const p = poll(root, ctx, load);
  return p.stop;
}
