// Modules: every built-in module, on or off, switched at run time with
// PUT modules/{name} (until the next reload), and the running hook order.
import { api } from './api.js';
import { el } from './ui.js';
import { table, cell, yesNo, writer, poll } from './listing.js';

export function render(root, ctx) {
  const w = writer(root, ctx);
  const status = el('p', { id: 'modules-status', class: 'hint' });
  const t = table('modules', 'Built-in modules', ['Module', 'Enabled', 'Set by', 'Hook position', '']);
  const how = el('p', { id: 'modules-how', class: 'hint' });
  root.append(el('h2', { text: 'Modules' }), status, t.wrap, how);

  async function load(live) {
    const m = await api.get('modules');
    if (!live()) return;
    const pos = new Map(m.modules.map((r) => [r.name, r.position]));
    t.body.replaceChildren(...m.builtin.map((b) => {
      const next = !b.enable;
      const toggle = w.button('switch:' + b.name, next ? 'Enable' : 'Disable', null,
        { class: 'switch', 'data-name': b.name, 'data-enable': String(next) }, async () => {
          const r = await api.put('modules/' + encodeURIComponent(b.name), { enable: next });
          status.textContent = r.name + (r.enable ? ' enabled' : ' disabled') + ' until the next reload.';
          status.dataset.done = r.name;
          await p.refresh();
        });
      return el('tr', { 'data-name': b.name },
        cell('name', b.name), cell('enable', b.enable, yesNo(b.enable)),
        cell('source', b.source, b.source === 'api' ? 'API (until reload)' : 'config file'),
        cell('position', pos.get(b.name) ?? null), el('td', {}, toggle));
    }));
    status.dataset.count = String(m.builtin.length);
    if (!status.dataset.done) {
      status.textContent = 'Running, in hook order: ' + (m.modules.map((r) => r.name).join(', ') || 'none') + '.';
    }
    how.textContent = m.how_to_change + (m.config_file ? ' (config file: ' + m.config_file + ')' : '');
  }
  const p = poll(root, ctx, load);
  return p.stop;
}
