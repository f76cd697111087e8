// The pages: each renders into `root`, refreshes itself, and returns a
// function that stops it.
import { api, ApiError } from './api.js';

const POLL_MS = 2000;
const SVG = 'http://www.w3.org/2000/svg';

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

function failed(root, ctx, e) {
  if (e instanceof ApiError && e.status === 401) { ctx.onAuthLost(); return; }
  const box = root.querySelector('.error') || root.appendChild(el('p', { class: 'error', role: 'alert' }));
  box.textContent = 'Error: ' + e.message;
}

// A sparkline of the last points (an SVG polyline): the fallback chart.
function sparkline(points) {
  const w = 160, h = 32;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('preserveAspectRatio', 'none');
  if (points.length > 1) {
    const max = Math.max(1, ...points);
    const step = w / (points.length - 1);
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', points.map((p, i) => `${(i * step).toFixed(1)},${(h - 2 - (p / max) * (h - 4)).toFixed(1)}`).join(' '));
    svg.append(line);
  }
  return svg;
}

const HISTORY = 60;

function overview(root, ctx) {
  const cards = [
    ['connections', 'Connections', ''],
    ['received', 'Messages in', '/s'],
    ['sent', 'Messages out', '/s'],
    ['dropped', 'Messages dropped', '/s'],
  ];
  const history = Object.fromEntries(cards.map(([k]) => [k, []]));
  const grid = el('div', { class: 'cards' });
  for (const [k, label, unit] of cards) {
    grid.append(el('div', { class: 'card', id: 'card-' + k },
      el('h3', { text: label }),
      el('p', { class: 'value' }, el('span', { id: 'ov-' + k, text: '…' }), el('small', { text: unit })),
      el('div', { class: 'chart', id: 'chart-' + k })));
  }
  root.append(el('h2', { text: 'Overview' }), grid,
    el('p', { class: 'hint', text: 'Refreshed every 2 s from /api/v5/stats and /api/v5/metrics.' }));
  const times = Object.fromEntries(cards.map(([k]) => [k, []]));
  // uPlot (vendored, a global from uPlot.iife.min.js) when it loaded; an
  // SVG sparkline otherwise.
  const charts = {};
  function draw(k) {
    const box = root.querySelector('#chart-' + k);
    if (!window.uPlot) { box.replaceChildren(sparkline(history[k])); return; }
    const data = [times[k].slice(), history[k].slice()];
    if (!charts[k]) {
      const label = cards.find(([c]) => c === k)[1];
      charts[k] = new window.uPlot({
        width: Math.max(160, box.clientWidth || 240),
        height: 90,
        legend: { show: false },
        cursor: { show: false },
        axes: [{ show: false }, { size: 40 }],
        series: [{}, { label, stroke: '#0b5cad', width: 1.5, fill: 'rgba(11,92,173,0.08)' }],
      }, data, box);
    } else {
      charts[k].setData(data);
    }
  }
  const resize = () => {
    for (const [k, c] of Object.entries(charts)) {
      const box = root.querySelector('#chart-' + k);
      if (box) c.setSize({ width: Math.max(160, box.clientWidth || 240), height: 90 });
    }
  };
  window.addEventListener('resize', resize);
  let last = null;
  let stopped = false;
  async function tick() {
    try {
      const [stats, metrics] = await Promise.all([api.get('stats?aggregate=true'), api.get('metrics?aggregate=true')]);
      if (stopped) return;
      const now = performance.now();
      const conn = stats['connections.count'] ?? 0;
      const values = { connections: conn };
      const counters = {
        received: metrics['messages.received'] ?? 0,
        sent: metrics['messages.sent'] ?? 0,
        dropped: metrics['messages.dropped'] ?? 0,
      };
      if (last) {
        const dt = Math.max(0.001, (now - last.t) / 1000);
        for (const k of Object.keys(counters)) values[k] = Math.max(0, counters[k] - last.c[k]) / dt;
      }
      last = { t: now, c: counters };
      for (const [k] of cards) {
        const v = values[k];
        const out = root.querySelector('#ov-' + k);
        if (v === undefined) continue;
        out.textContent = k === 'connections' ? String(v) : v.toFixed(1);
        out.dataset.value = String(v);
        history[k].push(v);
        if (history[k].length > HISTORY) history[k].shift();
        times[k].push(Date.now() / 1000);
        if (times[k].length > HISTORY) times[k].shift();
        draw(k);
      }
      const err = root.querySelector('.error');
      if (err) err.remove();
    } catch (e) {
      failed(root, ctx, e);
    }
  }
  tick();
  const timer = setInterval(tick, POLL_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
    window.removeEventListener('resize', resize);
    for (const c of Object.values(charts)) c.destroy();
  };
}

function clients(root, ctx) {
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
          el('td', { text: c.proto_ver ? 'MQTT ' + c.proto_ver : '' }),
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

export const pages = { overview, clients };
