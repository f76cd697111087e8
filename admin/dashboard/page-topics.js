// Topics: the topic filters subscribed to (GET topics), or one of them
// (GET topics/{filter}, percent-encoded: `/ # + $` all work).
import { api } from './api.js';
import { el } from './ui.js';
import { table, cell, poll, filters, input } from './listing.js';

export function render(root, ctx) {
  const topic = input('topics-filter', 'a/+/b exactly');
  const status = el('p', { id: 'topics-status', class: 'hint' });
  const t = table('topics', 'Topic filters subscribed to', ['Topic filter', 'Subscriptions', 'Node']);
  root.append(el('h2', { text: 'Topics' }), filters('topics', [['Topic filter', topic]], () => p.refresh()),
    status, t.wrap);

  async function load(live) {
    const want = topic.value.trim();
    let rows;
    let count;
    if (want) {
      try {
        rows = await api.get('topics/' + encodeURIComponent(want));
      } catch (e) {
        if (e.status !== 404) throw e;
        rows = [];
      }
      count = rows.length;
    } else {
      const page = await api.get('topics?limit=100');
      rows = page.data;
      count = page.meta.count;
    }
    if (!live()) return;
    t.body.replaceChildren(...rows.map((r) => el('tr', { 'data-topic': r.topic },
      cell('topic', r.topic), cell('subscriptions', r.subscriptions), cell('node', r.node))));
    status.dataset.count = String(count);
    status.textContent = rows.length + ' of ' + count + ' shown.';
  }
  const p = poll(root, ctx, load);
  return p.stop;
}
