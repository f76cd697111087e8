// Subscriptions: every subscription (GET subscriptions) with the API's
// filters: client id, topic filter, QoS, share group, matching a topic.
import { api } from './api.js';
import { el } from './ui.js';
import { table, cell, poll, filters, input, select, query } from './listing.js';

export function render(root, ctx) {
  const client = input('subs-clientid', 'client id');
  const topic = input('subs-topic', 'a/+/b exactly');
  const qos = select('subs-qos', [['', 'any'], ['0', '0'], ['1', '1'], ['2', '2']]);
  const group = input('subs-group', 'share group');
  const match = input('subs-match', 'matching topic a/b/c');
  const status = el('p', { id: 'subs-status', class: 'hint' });
  const t = table('subs', 'Subscriptions', ['Client id', 'Topic filter', 'QoS', 'No Local', 'Retain as published',
    'Retain handling']);
  root.append(el('h2', { text: 'Subscriptions' }),
    filters('subs', [['Client id', client], ['Filter', topic], ['QoS', qos], ['Share group', group],
      ['Matching', match]], () => p.refresh()),
    status, t.wrap);

  async function load(live) {
    const q = query([['clientid', client.value.trim()], ['topic', topic.value.trim()], ['qos', qos.value],
      ['share_group', group.value.trim()], ['match_topic', match.value.trim()]]);
    const page = await api.get('subscriptions?limit=100' + q);
    if (!live()) return;
    t.body.replaceChildren(...page.data.map((s) => el('tr', { 'data-clientid': s.clientid, 'data-topic': s.topic },
      cell('clientid', s.clientid), cell('topic', s.topic), cell('qos', s.qos),
      cell('nl', s.nl, s.nl ? 'yes' : 'no'), cell('rap', s.rap, s.rap ? 'yes' : 'no'), cell('rh', s.rh))));
    status.dataset.count = String(page.meta.count);
    status.textContent = page.data.length + ' of ' + page.meta.count + ' shown.';
  }
  const p = poll(root, ctx, load);
  return p.stop;
}
