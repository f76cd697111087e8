// Auth & ACL: every provider of every auth chain and every ACL source, with
// its counters (calls, allow, deny, ignore, error, timeout), mean latency
// and health, refreshed live; a provider's totals over its chains (its
// /status) on demand; the auth and ACL caches with their purge buttons.
import { api } from './api.js';
import { el, failed, POLL_MS } from './ui.js';

const enc = encodeURIComponent;
const COUNTERS = ['calls', 'allow', 'deny', 'ignore', 'error', 'timeout'];

function meanMs(m) {
  return m.calls ? (m.latency_us_sum / m.calls / 1000).toFixed(2) : '';
}

function table(id, caption) {
  const body = el('tbody', { id: id + '-rows' });
  const t = el('table', { id: id + '-table' },
    el('caption', { class: 'visually-hidden', text: caption }),
    el('thead', {}, el('tr', {}, ...['Provider', 'Kind', 'Chain', 'Health', ...COUNTERS, 'Mean ms', 'On error'].map((h) => el('th', { scope: 'col', text: h })))),
    body);
  return [el('div', { class: 'scroll' }, t), body];
}

export function render(root, ctx) {
  const canWrite = ctx.me.role === 'administrator';
  const [authTable, authBody] = table('auth', 'Authentication providers, per chain');
  const [aclTable, aclBody] = table('acl', 'ACL sources, per chain');
  const detail = el('div', { id: 'provider-detail', class: 'card', hidden: '' });
  const status = el('p', { id: 'auth-status', class: 'hint', role: 'status' });
  const cacheCard = (kind, label) => {
    const purge = el('button', { type: 'button', id: 'purge-' + kind, class: 'danger', text: 'Purge' });
    if (!canWrite) { purge.disabled = true; purge.title = 'viewers cannot purge caches'; }
    purge.addEventListener('click', async () => {
      if (purge.dataset.armed !== 'yes') { purge.dataset.armed = 'yes'; purge.textContent = 'Confirm purge'; return; }
      purge.dataset.armed = '';
      purge.textContent = 'Purge';
      try {
        await api.del((kind === 'auth' ? 'authentication' : 'authorization') + '/cache');
        status.textContent = label + ' purged.';
        await load();
      } catch (e) { failed(root, ctx, e); }
    });
    return el('div', { class: 'card', id: 'cache-' + kind },
      el('h3', { text: label }),
      el('p', { class: 'value' }, el('span', { class: 'entries', text: '…' }), el('small', { text: 'entries' })),
      el('p', { class: 'hint counters' }), purge);
  };
  const caches = el('div', { class: 'cards' }, cacheCard('auth', 'Auth cache'), cacheCard('acl', 'ACL cache'));
  root.append(el('h2', { text: 'Auth & ACL' }), status,
    el('h3', { text: 'Authentication providers' }), authTable,
    el('h3', { text: 'ACL sources' }), aclTable, detail,
    el('h3', { text: 'Caches' }), caches,
    el('p', { class: 'hint', text: 'Refreshed every 2 s from /api/v5/authentication, /api/v5/authorization/sources and their caches. Health: connected or disconnected for providers with a backend connection.' }));
  let stopped = false;
  let shown = null; // [kind, id] of the detail panel

  function rows(body, sources, kind) {
    body.replaceChildren(...sources.map((s) => {
      const attrs = { 'data-id': s.id, 'data-chain': s.chain, 'data-status': s.status, 'data-latency-us-sum': String(s.metrics.latency_us_sum) };
      for (const c of COUNTERS) attrs['data-' + c] = String(s.metrics[c]);
      const name = el('button', { type: 'button', class: 'linkish', text: s.id, title: 'Totals over its chains' });
      name.addEventListener('click', () => { shown = [kind, s.id]; showDetail(); });
      return el('tr', attrs,
        el('td', {}, name), el('td', { text: s.backend }), el('td', { text: s.chain + ' #' + s.position }),
        el('td', { class: 'status-' + s.status, text: s.status }),
        ...COUNTERS.map((c) => el('td', { class: 'num', text: String(s.metrics[c]) })),
        el('td', { class: 'num', text: meanMs(s.metrics) }), el('td', { text: s.on_error }));
    }));
    body.dataset.count = String(sources.length);
  }

  async function showDetail() {
    if (!shown) return;
    const [kind, id] = shown;
    try {
      const s = await api.get((kind === 'auth' ? 'authentication/' : 'authorization/sources/') + enc(id) + '/status');
      if (stopped) return;
      const m = s.metrics;
      detail.hidden = false;
      detail.dataset.kind = kind;
      detail.dataset.id = s.id;
      detail.dataset.status = s.status;
      for (const c of COUNTERS) detail.dataset[c] = String(m[c]);
      detail.replaceChildren(
        el('h3', { text: (kind === 'auth' ? 'Auth provider ' : 'ACL source ') + s.id + ' — ' + s.status }),
        el('p', { text: COUNTERS.map((c) => c + ' ' + m[c]).join(' · ') + (m.calls ? ' · mean ' + meanMs(m) + ' ms' : '') }),
        el('p', { class: 'hint', text: 'In ' + s.chains.length + ' chain(s): ' + s.chains.map((c) => c.chain + ' #' + c.position).join(', ') }),
        el('p', { class: 'hint', text: 'Latency (µs, calls per bucket): ' + Object.entries(m.latency_us).filter(([, n]) => n).map(([k, n]) => k.replace('le_', '≤') + ': ' + n).join(', ') }));
    } catch (e) { failed(root, ctx, e); }
  }

  function cache(kind, counters) {
    const card = root.querySelector('#cache-' + kind);
    card.querySelector('.entries').textContent = String(counters.entries ?? '');
    for (const [k, v] of Object.entries(counters)) card.dataset[k.replace(/_([a-z])/g, (_, c) => c.toUpperCase())] = String(v);
    card.querySelector('.counters').textContent = Object.entries(counters).filter(([k]) => k !== 'entries').map(([k, v]) => k.replace('_', ' ') + ' ' + v).join(' · ');
  }

  async function load() {
    try {
      const [auth, acl, authCache, aclCache] = await Promise.all([
        api.get('authentication'), api.get('authorization/sources'),
        api.get('authentication/cache'), api.get('authorization/cache')]);
      if (stopped) return;
      rows(authBody, auth, 'auth');
      rows(aclBody, acl.sources, 'acl');
      cache('auth', authCache);
      cache('acl', aclCache);
      status.dataset.loaded = 'yes';
      await showDetail();
    } catch (e) { failed(root, ctx, e); }
  }
  load();
  const timer = setInterval(load, POLL_MS);
  return () => { stopped = true; clearInterval(timer); };
}
