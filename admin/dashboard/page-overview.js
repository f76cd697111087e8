// Overview: connections, message rates, and each auth provider's
// decisions per second (allow / deny / ignore / error), its mean latency
// and its health, live.
//
// Every plotted rate is (counter − previous counter) / (t − previous t)
// over two consecutive samples; the element that shows it carries both
// samples (data-counter, data-prev-counter, data-t, data-prev-t, in
// seconds of the page's monotonic clock) and the rate (data-rate), so
// that a test can hold the chart against the counters.
import { api } from './api.js';
import { el, failed, sparkline, POLL_MS } from './ui.js';

const HISTORY = 60;
// Auth decisions: the chart's series, and the counters each sums.
const DECISIONS = [
  ['allow', 'allow', ['allow'], '#1a7f37'],
  ['deny', 'deny', ['deny'], '#b42318'],
  ['ignore', 'ignore', ['ignore'], '#8c959f'],
  ['error', 'error (incl. timeout)', ['error', 'timeout'], '#bc4c00'],
];

// A counter sampled over time: the last two samples and the rate between.
function sampler() {
  return { counter: null, t: null, prevCounter: null, prevT: null, rate: undefined };
}

function sample(s, counter, t) {
  s.prevCounter = s.counter;
  s.prevT = s.t;
  s.counter = counter;
  s.t = t;
  if (s.prevT === null) { s.rate = undefined; return; }
  // A counter that went down (a restart) plots 0.
  s.rate = counter >= s.prevCounter ? (counter - s.prevCounter) / (t - s.prevT) : 0;
}

function expose(node, s) {
  if (s.rate === undefined) return;
  node.dataset.counter = String(s.counter);
  node.dataset.prevCounter = String(s.prevCounter);
  node.dataset.t = String(s.t);
  node.dataset.prevT = String(s.prevT);
  node.dataset.rate = String(s.rate);
}

// Sums a provider's counters over the chains it is in (as
// /authentication/{id}/status does), keeping the first-seen order.
function byProvider(sources) {
  const out = new Map();
  for (const s of sources || []) {
    let p = out.get(s.id);
    if (!p) {
      p = { id: s.id, backend: s.backend, status: s.status, chains: [], m: {} };
      out.set(s.id, p);
    }
    p.chains.push(s.chain);
    if (s.status === 'disconnected') p.status = 'disconnected';
    for (const k of ['calls', 'allow', 'deny', 'ignore', 'error', 'timeout', 'latency_us_sum']) {
      p.m[k] = (p.m[k] || 0) + (s.metrics[k] || 0);
    }
  }
  return [...out.values()];
}

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
  // Not `.card`: the four cards above stay the page's only `.card`s.
  const authGrid = el('div', { class: 'cards auth-cards', id: 'ov-auth' });
  const authNone = el('p', { class: 'hint', id: 'ov-auth-none', text: 'No auth provider is configured.' });
  authNone.hidden = true;
  root.append(el('h2', { text: 'Overview' }), grid,
    el('h3', { class: 'section', id: 'ov-auth-title', text: 'Authentication decisions per second' }), authGrid, authNone,
    el('p', { class: 'hint', text: 'Refreshed every 2 s from /api/v5/stats, /api/v5/metrics and /api/v5/authentication.' }));
  const times = Object.fromEntries(cards.map(([k]) => [k, []]));
  const samplers = { received: sampler(), sent: sampler(), dropped: sampler() };
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

  // One card per auth provider, made when it first appears.
  const providers = new Map();
  function providerCard(p) {
    let v = providers.get(p.id);
    if (v) return v;
    const n = providers.size;
    const status = el('span', { class: 'health', 'data-status': p.status, text: p.status });
    const latency = el('span', { class: 'latency', text: '…' });
    const rows = DECISIONS.map(([k, label, , color]) => {
      const val = el('span', { class: 'series', 'data-series': 'auth:' + p.id + ':' + k, text: '…' });
      const swatch = el('span', { class: 'swatch', 'aria-hidden': 'true' });
      swatch.style.background = color;
      return [k, val, el('li', {}, swatch, el('span', { text: label + ' ' }), val, el('small', { text: '/s' }))];
    });
    const chart = el('div', { class: 'chart', id: 'chart-auth-' + n });
    const card = el('div', { class: 'auth-card', id: 'card-auth-' + n, 'data-provider': p.id },
      el('h3', {}, el('span', { class: 'provider', text: p.id }), el('small', { text: ' ' + p.backend + ' · ' }), status),
      el('ul', { class: 'decisions' }, ...rows.map((r) => r[2])),
      el('p', { class: 'hint' }, el('span', { text: 'Mean latency ' }), latency, el('span', { text: ' ms' })),
      chart);
    authGrid.append(card);
    v = {
      card, status, latency, chart, uplot: null, times: [], hist: DECISIONS.map(() => []),
      s: Object.fromEntries(DECISIONS.map(([k]) => [k, sampler()])), calls: sampler(), lat: sampler(),
      vals: Object.fromEntries(rows.map(([k, val]) => [k, val])),
    };
    providers.set(p.id, v);
    return v;
  }
  function drawProvider(v) {
    const data = [v.times.slice(), ...v.hist.map((h) => h.slice())];
    if (!window.uPlot) { v.chart.replaceChildren(sparkline(v.hist[0])); return; }
    if (!v.uplot) {
      v.uplot = new window.uPlot({
        width: Math.max(160, v.chart.clientWidth || 240),
        height: 110,
        legend: { show: false },
        cursor: { show: false },
        axes: [{ show: false }, { size: 40 }],
        series: [{}, ...DECISIONS.map(([, label, , color]) => ({ label, stroke: color, width: 1.5 }))],
      }, data, v.chart);
    } else {
      v.uplot.setData(data);
    }
  }
  function showProviders(list, t, wall) {
    authNone.hidden = list.length > 0;
    for (const p of list) {
      const v = providerCard(p);
      v.status.dataset.status = p.status;
      v.status.textContent = p.status;
      v.status.className = 'health' + (p.status === 'disconnected' ? ' bad' : p.status === 'connected' ? ' ok' : '');
      DECISIONS.forEach(([k, , counters], i) => {
        const s = v.s[k];
        sample(s, counters.reduce((a, c) => a + (p.m[c] || 0), 0), t);
        if (s.rate === undefined) return;
        expose(v.vals[k], s);
        v.vals[k].textContent = s.rate.toFixed(1);
        v.hist[i].push(s.rate);
        if (v.hist[i].length > HISTORY) v.hist[i].shift();
      });
      sample(v.calls, p.m.calls || 0, t);
      sample(v.lat, p.m.latency_us_sum || 0, t);
      if (v.calls.rate === undefined) continue;
      // Mean latency of the calls made in the interval (none: the mean so far).
      const dc = v.calls.counter - v.calls.prevCounter;
      const ms = dc > 0 ? (v.lat.counter - v.lat.prevCounter) / dc / 1000
        : (p.m.calls ? p.m.latency_us_sum / p.m.calls / 1000 : 0);
      v.latency.dataset.value = String(ms);
      v.latency.textContent = ms.toFixed(2);
      v.times.push(wall);
      if (v.times.length > HISTORY) v.times.shift();
      drawProvider(v);
    }
  }

  const resize = () => {
    for (const [k, c] of Object.entries(charts)) {
      const box = root.querySelector('#chart-' + k);
      if (box) c.setSize({ width: Math.max(160, box.clientWidth || 240), height: 90 });
    }
    for (const v of providers.values()) {
      if (v.uplot) v.uplot.setSize({ width: Math.max(160, v.chart.clientWidth || 240), height: 110 });
    }
  };
  window.addEventListener('resize', resize);
  let stopped = false;
  let busy = false;
  let samples = 0;
  async function tick() {
    // One request at a time: samples stay in order.
    if (busy) return;
    busy = true;
    try {
      const [stats, metrics, sources] = await Promise.all([
        api.get('stats?aggregate=true'), api.get('metrics?aggregate=true'), api.get('authentication'),
      ]);
      if (stopped) return;
      const t = performance.now() / 1000;
      const wall = Date.now() / 1000;
      const values = { connections: stats['connections.count'] ?? 0 };
      const counters = {
        received: metrics['messages.received'] ?? 0,
        sent: metrics['messages.sent'] ?? 0,
        dropped: metrics['messages.dropped'] ?? 0,
      };
      for (const k of Object.keys(counters)) {
        sample(samplers[k], counters[k], t);
        if (samplers[k].rate !== undefined) values[k] = samplers[k].rate;
      }
      for (const [k] of cards) {
        const v = values[k];
        const out = root.querySelector('#ov-' + k);
        if (v === undefined) continue;
        out.textContent = k === 'connections' ? String(v) : v.toFixed(1);
        out.dataset.value = String(v);
        if (samplers[k]) expose(out, samplers[k]);
        history[k].push(v);
        if (history[k].length > HISTORY) history[k].shift();
        times[k].push(wall);
        if (times[k].length > HISTORY) times[k].shift();
        draw(k);
      }
      showProviders(byProvider(sources), t, wall);
      samples += 1;
      root.querySelector('#ov-auth').dataset.samples = String(samples);
      const err = root.querySelector('.error');
      if (err) err.remove();
    } catch (e) {
      failed(root, ctx, e);
    } finally {
      busy = false;
    }
  }
  tick();
  const timer = setInterval(tick, POLL_MS);
  return () => {
    stopped = true;
    clearInterval(timer);
    window.removeEventListener('resize', resize);
    for (const c of Object.values(charts)) c.destroy();
    for (const v of providers.values()) if (v.uplot) v.uplot.destroy();
  };
}
