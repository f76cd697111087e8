// What the pages share: building elements, reporting a failed request,
// the refresh interval, and the fallback chart.
import { ApiError } from './api.js';

export const POLL_MS = 2000;
const SVG = 'http://www.w3.org/2000/svg';

export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

export function failed(root, ctx, e) {
  if (e instanceof ApiError && e.status === 401) { ctx.onAuthLost(); return; }
  const box = root.querySelector('.error') || root.appendChild(el('p', { class: 'error', role: 'alert' }));
  box.textContent = 'Error: ' + e.message;
}

// A sparkline of the last points (an SVG polyline): the fallback chart.
export function sparkline(points) {
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

