// Banned: not built yet.
import { el } from './ui.js';

export function render(root) {
  root.append(el('h2', { text: 'Banned' }), el('p', { class: 'hint', text: 'Not built yet.' }));
  return () => {};
}
