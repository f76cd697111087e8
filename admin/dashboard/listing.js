// What the list pages share: a table whose cells carry the API's value
// (data-field, data-value) beside the text shown, write buttons that act
// on their second press, and the refresh loop.
import { el, failed, POLL_MS } from './ui.js';

// A table with a header row; rows go into `.body` (id `<id>-rows`).
export function table(id, caption, headers) {
  const body = el('tbody', { id: id + '-rows' });
  const t = el('table', { id: id + '-table' },
    el('caption', { class: 'visually-hidden', text: caption }),
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { scope: 'col', text: h })))),
    body);
  return { body, wrap: el('div', { class: 'scroll' }, t) };
}

// A cell showing `text` (default: the value) with the API's value in
// data-value ('' for null).
export function cell(field, value, text) {
  const v = value === null || value === undefined ? '' : String(value);
  return el('td', { 'data-field': field, 'data-value': v, text: text === undefined ? v : text });
}

export const yesNo = (b) => (b ? 'yes' : 'no');

// Write buttons for one page. Viewers get them disabled. The first press
// arms a button (data-armed="yes", for 5 s), the second runs `act`; the
// armed state survives the table being redrawn by the refresh.
export function writer(root, ctx) {
  const canWrite = ctx.me.role === 'administrator';
  const armedUntil = new Map();
  function button(key, label, armedLabel, attrs, act) {
    const b = el('button', { type: 'button', class: 'kick', ...attrs, text: label });
    if (!canWrite) { b.disabled = true; b.title = 'viewers cannot change this'; return b; }
    if ((armedUntil.get(key) || 0) > Date.now()) { b.dataset.armed = 'yes'; b.textContent = armedLabel; }
    b.addEventListener('click', async () => {
      if (!armedLabel || b.dataset.armed === 'yes') {
        armedUntil.delete(key);
        b.disabled = true;
        try { await act(); } catch (e) { failed(root, ctx, e); }
        b.disabled = false;
        b.dataset.armed = 'no';
        b.textContent = label;
        return;
      }
      armedUntil.set(key, Date.now() + 5000);
      b.dataset.armed = 'yes';
      b.textContent = armedLabel;
    });
    return b;
  }
  return { canWrite, button };
}

// Runs `load` now and every refresh (never two at once); returns the
// stop function. `load` gets a `live()` check to call after each await.
export function poll(root, ctx, load, ms) {
  let stopped = false;
  let running = false;
  async function tick() {
    if (stopped || running) return;
    running = true;
    try {
      await load(() => !stopped);
      const box = root.querySelector('.error');
      if (box) box.textContent = '';
    } catch (e) {
      if (!stopped) failed(root, ctx, e);
    } finally { running = false; }
  }
  tick();
  const timer = setInterval(tick, ms || POLL_MS * 2);
  return { refresh: tick, stop: () => { stopped = true; clearInterval(timer); } };
}

// A filter form: [label, input] pairs and an Apply button.
export function filters(id, fields, onApply) {
  const form = el('form', { class: 'filters', role: 'search', id: id + '-filters' });
  for (const [label, f] of fields) form.append(el('label', { for: f.id, text: label }), f);
  form.append(el('button', { type: 'submit', text: 'Apply' }));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); onApply(); });
  return form;
}

export function input(id, placeholder, type) {
  return el('input', { id, type: type || 'search', placeholder: placeholder || '' });
}

export function select(id, options) {
  return el('select', { id }, ...options.map(([v, t]) => el('option', { value: v, text: t })));
}

// '&key=value' for the given values only, each encoded.
export function query(pairs) {
  return pairs.filter(([, v]) => v !== '' && v !== null && v !== undefined)
    .map(([k, v]) => '&' + k + '=' + encodeURIComponent(v)).join('');
}
