// Users: the built-in user store's users (list, add, change password,
// delete) and its ACL rules (list, add, delete), for each `builtin`
// provider of the auth and ACL chains. Passwords typed here are cleared from
// their fields when sent and kept nowhere else. Viewers see, and their write
// controls are disabled (the API refuses their writes anyway).
import { api } from './api.js';
import { el, failed, POLL_MS } from './ui.js';

const enc = encodeURIComponent;

function builtinIds(sources) {
  return [...new Set(sources.filter((s) => s.backend === 'builtin').map((s) => s.id))];
}

function select(id, values) {
  return el('select', { id }, ...values.map((v) => el('option', { value: v, text: v })));
}

// A button pressed twice: arm, then act.
function armed(label, cls, act) {
  const b = el('button', { type: 'button', class: cls, text: label });
  b.addEventListener('click', async () => {
    if (b.dataset.armed !== 'yes') { b.dataset.armed = 'yes'; b.textContent = 'Confirm ' + label.toLowerCase(); return; }
    b.disabled = true;
    await act();
  });
  return b;
}

export function render(root, ctx) {
  const canWrite = ctx.me.role === 'administrator';
  const status = el('p', { id: 'users-status', class: 'hint', role: 'status' });
  root.append(el('h2', { text: 'Users' }), status);
  let stopped = false;
  let timer = null;

  function say(text) { status.textContent = text; }
  function guard(b) { if (!canWrite) { b.disabled = true; b.title = 'viewers cannot change users or rules'; } return b; }

  async function start() {
    let auth, acl;
    try {
      [auth, acl] = await Promise.all([api.get('authentication'), api.get('authorization/sources')]);
    } catch (e) { failed(root, ctx, e); return; }
    if (stopped) return;
    const stores = builtinIds(auth);
    const ruleSources = builtinIds(acl.sources);
    if (!stores.length && !ruleSources.length) {
      root.append(el('p', { id: 'users-none', text: 'No built-in user store in the auth or ACL chains ([auth.builtin.<name>], [acl.builtin.<name>]).' }));
      return;
    }
    const refreshers = [];
    if (stores.length) refreshers.push(usersSection(stores));
    if (ruleSources.length) refreshers.push(rulesSection(ruleSources));
    // A refresh would wipe a password being typed or an armed delete.
    const busy = () => [...root.querySelectorAll('input.newpw')].some((i) => i.value) || root.querySelector('[data-armed="yes"]');
    const tick = () => { if (!busy()) for (const r of refreshers) r(); };
    for (const r of refreshers) r();
    timer = setInterval(tick, POLL_MS * 2);
  }

  function usersSection(stores) {
    const store = select('users-store', stores);
    const body = el('tbody', { id: 'users-rows' });
    const count = el('span', { id: 'users-count' });
    const id = el('input', { id: 'user-add-id', required: '', autocomplete: 'off' });
    const pass = el('input', { id: 'user-add-pass', type: 'password', required: '', autocomplete: 'new-password' });
    const sup = el('input', { id: 'user-add-super', type: 'checkbox' });
    const form = el('form', { id: 'user-add', class: 'inline', 'aria-label': 'Add a user' },
      el('div', { class: 'field' }, el('label', { for: 'user-add-id', text: 'User name' }), id),
      el('div', { class: 'field' }, el('label', { for: 'user-add-pass', text: 'Password' }), pass),
      el('div', { class: 'field check' }, sup, el('label', { for: 'user-add-super', text: 'Superuser' })),
      guard(el('button', { type: 'submit', id: 'user-add-submit', text: 'Add user' })));
    const table = el('table', { id: 'users-table' },
      el('caption', { class: 'visually-hidden', text: 'Users of the built-in store' }),
      el('thead', {}, el('tr', {}, ...['User', 'Superuser', 'Created', 'Updated', '', ''].map((h) => el('th', { scope: 'col', text: h })))),
      body);
    root.append(el('section', { id: 'users-section' },
      el('h3', { text: 'Built-in users' }),
      el('div', { class: 'filters' }, el('label', { for: 'users-store', text: 'Store' }), store, el('span', { class: 'hint' }, count, ' users')),
      form, el('div', { class: 'scroll' }, table)));
    const base = () => 'authentication/' + enc(store.value) + '/users';

    async function load() {
      try {
        const page = await api.get(base() + '?limit=1000');
        if (stopped) return;
        count.textContent = String(page.meta.count);
        body.dataset.count = String(page.meta.count);
        body.replaceChildren(...page.data.map(row));
      } catch (e) { failed(root, ctx, e); }
    }

    function row(u) {
      const newPw = el('input', { type: 'password', class: 'newpw', autocomplete: 'new-password', 'aria-label': 'New password for ' + u.user_id });
      const save = guard(el('button', { type: 'button', class: 'pw-save', text: 'Set password' }));
      save.addEventListener('click', async () => {
        const password = newPw.value;
        newPw.value = '';
        if (!password) { say('Type the new password first.'); return; }
        save.disabled = true;
        try {
          await api.put(base() + '/' + enc(u.user_id), { password });
          say('Password of ' + u.user_id + ' changed.');
        } catch (e) { failed(root, ctx, e); } finally { save.disabled = !canWrite; }
      });
      if (!canWrite) newPw.disabled = true;
      const del = guard(armed('Delete', 'danger del', async () => {
        try {
          await api.del(base() + '/' + enc(u.user_id));
          say('Deleted ' + u.user_id + '.');
          await load();
        } catch (e) { failed(root, ctx, e); }
      }));
      return el('tr', { 'data-user-id': u.user_id, 'data-superuser': String(u.is_superuser) },
        el('td', { text: u.user_id }), el('td', { text: u.is_superuser ? 'yes' : 'no' }),
        el('td', { text: u.created_at }), el('td', { text: u.updated_at }),
        el('td', {}, newPw, ' ', save), el('td', {}, del));
    }

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const password = pass.value;
      pass.value = '';
      try {
        await api.post(base(), { user_id: id.value, password, is_superuser: sup.checked });
        say('Added ' + id.value + '.');
        id.value = '';
        sup.checked = false;
        await load();
      } catch (e) { failed(root, ctx, e); }
    });
    store.addEventListener('change', load);
    return load;
  }

  function rulesSection(sources) {
    const source = select('rules-source', sources);
    const body = el('tbody', { id: 'rules-rows' });
    const count = el('span', { id: 'rules-count' });
    const kind = select('rule-kind', ['username', 'clientid']);
    const who = el('input', { id: 'rule-who', required: '' });
    const perm = select('rule-permission', ['allow', 'deny']);
    const action = select('rule-action', ['publish', 'subscribe', 'all']);
    const topic = el('input', { id: 'rule-topic', required: '', placeholder: 'a/# or eq a/#' });
    const prio = el('input', { id: 'rule-priority', type: 'number', value: '0' });
    const f = (id, label, input) => el('div', { class: 'field' }, el('label', { for: id, text: label }), input);
    const form = el('form', { id: 'rule-add', class: 'inline', 'aria-label': 'Add a rule' },
      f('rule-kind', 'For', kind), f('rule-who', 'Name', who), f('rule-permission', 'Permission', perm),
      f('rule-action', 'Action', action), f('rule-topic', 'Topic filter', topic), f('rule-priority', 'Priority', prio),
      guard(el('button', { type: 'submit', id: 'rule-add-submit', text: 'Add rule' })));
    const table = el('table', { id: 'rules-table' },
      el('caption', { class: 'visually-hidden', text: 'ACL rules of the built-in store' }),
      el('thead', {}, el('tr', {}, ...['Id', 'For', 'Permission', 'Action', 'Topic', 'QoS', 'Retain', 'Priority', ''].map((h) => el('th', { scope: 'col', text: h })))),
      body);
    root.append(el('section', { id: 'rules-section' },
      el('h3', { text: 'ACL rules' }),
      el('div', { class: 'filters' }, el('label', { for: 'rules-source', text: 'Source' }), source, el('span', { class: 'hint' }, count, ' rules')),
      form, el('div', { class: 'scroll' }, table)));
    const base = () => 'authorization/sources/' + enc(source.value) + '/rules';

    async function load() {
      try {
        const page = await api.get(base() + '?limit=1000');
        if (stopped) return;
        count.textContent = String(page.meta.count);
        body.dataset.count = String(page.meta.count);
        body.replaceChildren(...page.data.map(row));
      } catch (e) { failed(root, ctx, e); }
    }

    function row(r) {
      const subject = r.username != null ? 'user ' + r.username : 'client ' + r.clientid;
      const del = guard(armed('Delete', 'danger del', async () => {
        try {
          await api.del(base() + '/' + enc(String(r.id)));
          say('Deleted rule ' + r.id + '.');
          await load();
        } catch (e) { failed(root, ctx, e); }
      }));
      return el('tr', { 'data-rule-id': String(r.id), 'data-permission': r.permission, 'data-action': r.action, 'data-topic': r.topic },
        el('td', { text: String(r.id) }), el('td', { text: subject }), el('td', { text: r.permission }),
        el('td', { text: r.action }), el('td', { text: r.topic }),
        el('td', { text: r.qos ? r.qos.join(',') : 'any' }), el('td', { text: r.retain == null ? 'any' : String(r.retain) }),
        el('td', { text: String(r.priority) }), el('td', {}, del));
    }

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const rule = { permission: perm.value, action: action.value, topic: topic.value, priority: Number(prio.value || 0) };
      rule[kind.value] = who.value;
      try {
        const made = await api.post(base(), rule);
        say('Added rule ' + made.id + '.');
        topic.value = '';
        await load();
      } catch (e) { failed(root, ctx, e); }
    });
    source.addEventListener('change', load);
    return load;
  }

  start();
  return () => { stopped = true; if (timer) clearInterval(timer); };
}
