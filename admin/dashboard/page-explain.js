// Explain: run a listener's auth chain on credentials, or its ACL chain on
// one action, and show the decision, who decided and each provider's step —
// the same answer as `portcullis auth check` / `acl explain` (the API runs
// the same code). A typed password is sent once and cleared from its field
// before the answer; it is kept nowhere else.
import { api } from './api.js';
import { el, failed } from './ui.js';

function field(id, label, attrs) {
  return el('div', { class: 'field' }, el('label', { for: id, text: label }), el('input', { id, ...(attrs || {}) }));
}

function opt(id) {
  const v = document.getElementById(id).value.trim();
  return v === '' ? undefined : v;
}

// The answer: decision, decided by, and the steps table.
function show(box, prefix, r) {
  box.dataset.decision = r.decision;
  box.dataset.decidedBy = r.decided_by;
  box.dataset.chain = r.chain;
  if (r.reason) box.dataset.reason = r.reason; else delete box.dataset.reason;
  const rows = r.steps.map((s, i) => el('tr', {
    'data-provider': s.provider, 'data-result': s.result, 'data-rule': s.rule ?? '', 'data-step': String(i),
  },
  el('td', { text: s.provider }), el('td', { text: s.kind }), el('td', { text: s.result }),
  el('td', { text: s.rule ?? '' }), el('td', { text: s.detail ?? '' }),
  el('td', { text: s.elapsed_ms.toFixed(2) })));
  const verdict = el('p', { class: 'verdict ' + (r.decision === 'allow' ? 'ok' : 'bad') },
    el('strong', { id: prefix + '-decision', text: r.decision.toUpperCase() }),
    ' — decided by ', el('code', { id: prefix + '-decided-by', text: r.decided_by }),
    ' (chain ', el('code', { text: r.chain }), ')',
    r.reason ? ' — reason: ' + r.reason : '', r.superuser ? ' — superuser' : '');
  const table = el('table', { id: prefix + '-steps' },
    el('caption', { class: 'visually-hidden', text: 'Each provider asked, in order' }),
    el('thead', {}, el('tr', {}, ...['Provider', 'Kind', 'Result', 'Rule', 'Detail', 'ms'].map((h) => el('th', { scope: 'col', text: h })))),
    el('tbody', {}, ...rows));
  box.replaceChildren(verdict, el('div', { class: 'scroll' }, table));
}

export function render(root, ctx) {
  const canWrite = ctx.me.role === 'administrator';
  const authForm = el('form', { id: 'explain-auth', class: 'explain', 'aria-labelledby': 'xa-title' },
    el('h3', { id: 'xa-title', text: 'Authentication' }),
    field('xa-client', 'Client id', { required: '' }),
    field('xa-user', 'Username'),
    field('xa-pass', 'Password', { type: 'password', autocomplete: 'off' }),
    field('xa-peer', 'Peer address', { placeholder: '127.0.0.1' }),
    field('xa-listener', 'Listener', { placeholder: 'the first' }),
    el('button', { type: 'submit', id: 'xa-submit', text: 'Explain' }));
  const action = el('select', { id: 'xc-action' },
    el('option', { value: 'publish', text: 'publish' }), el('option', { value: 'subscribe', text: 'subscribe' }));
  const qos = el('select', { id: 'xc-qos' }, ...[0, 1, 2].map((q) => el('option', { value: String(q), text: String(q) })));
  const aclForm = el('form', { id: 'explain-acl', class: 'explain', 'aria-labelledby': 'xc-title' },
    el('h3', { id: 'xc-title', text: 'ACL' }),
    field('xc-client', 'Client id', { required: '' }),
    field('xc-user', 'Username'),
    field('xc-topic', 'Topic (publish) or filter (subscribe)', { required: '' }),
    el('div', { class: 'field' }, el('label', { for: 'xc-action', text: 'Action' }), action),
    el('div', { class: 'field' }, el('label', { for: 'xc-qos', text: 'QoS' }), qos),
    el('div', { class: 'field check' }, el('input', { id: 'xc-retain', type: 'checkbox' }), el('label', { for: 'xc-retain', text: 'Retain' })),
    el('div', { class: 'field check' }, el('input', { id: 'xc-superuser', type: 'checkbox' }), el('label', { for: 'xc-superuser', text: 'Superuser' })),
    field('xc-peer', 'Peer address', { placeholder: '127.0.0.1' }),
    field('xc-listener', 'Listener', { placeholder: 'the first' }),
    el('button', { type: 'submit', id: 'xc-submit', text: 'Explain' }));
  const authOut = el('div', { id: 'xa-result', class: 'result', 'aria-live': 'polite' });
  const aclOut = el('div', { id: 'xc-result', class: 'result', 'aria-live': 'polite' });
  const note = el('p', { class: 'hint', text: 'The chains run as for a real client, without cache or brute-force guard (the providers\' counters count the check). Same answer as `portcullis auth check` / `portcullis acl explain`.' });
  root.append(el('h2', { text: 'Explain' }), note,
    el('div', { class: 'explain-grid' }, el('section', {}, authForm, authOut), el('section', {}, aclForm, aclOut)));
  if (!canWrite) {
    for (const b of [authForm.querySelector('button'), aclForm.querySelector('button')]) {
      b.disabled = true;
      b.title = 'explain runs the chains (a POST): administrators only';
    }
  }
  let stopped = false;

  authForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const pass = document.getElementById('xa-pass');
    const body = {
      clientid: document.getElementById('xa-client').value,
      username: opt('xa-user'),
      password: pass.value === '' ? undefined : pass.value,
      peerhost: opt('xa-peer'),
      listener: opt('xa-listener'),
    };
    pass.value = '';
    const asked = api.post('authentication/explain', body);
    body.password = undefined;
    authOut.replaceChildren(el('p', { class: 'hint', text: 'Asking…' }));
    try {
      const r = await asked;
      if (!stopped) show(authOut, 'xa', r);
    } catch (e) {
      authOut.replaceChildren();
      failed(authOut, ctx, e);
    }
  });

  aclForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {
      clientid: document.getElementById('xc-client').value,
      username: opt('xc-user'),
      topic: document.getElementById('xc-topic').value,
      action: action.value,
      qos: Number(qos.value),
      retain: document.getElementById('xc-retain').checked,
      superuser: document.getElementById('xc-superuser').checked,
      peerhost: opt('xc-peer'),
      listener: opt('xc-listener'),
    };
    aclOut.replaceChildren(el('p', { class: 'hint', text: 'Asking…' }));
    try {
      const r = await api.post('authorization/explain', body);
      if (!stopped) show(aclOut, 'xc', r);
    } catch (e) {
      aclOut.replaceChildren();
      failed(aclOut, ctx, e);
    }
  });
  return () => { stopped = true; };
}
