// Overview: connections and message rates, live.
import { api } from './api.js';
import { el, failed, sparkline, POLL_MS } from './ui.js';

const HISTORY = 60;

export function render(root, ctx) {
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
