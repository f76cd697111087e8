// Login (with the first administrator created over loopback, and the
// forced change of an initial secret), navigation (#/page), and the page
// currently shown. Secrets typed here are cleared from their fields as soon
// as the server has answered, and never kept elsewhere.
import { session, setCsrf, ApiError } from './api.js';
import { pages } from './pages.js';

const $ = (id) => document.getElementById(id);
let me = null;
let stopPage = null;
// The session of a key that must change its secret first.
let pending = null;

// The dashboard's own endpoints (beside index.html), JSON in and out.
async function own(method, path, body, csrf) {
  const headers = { Accept: 'application/json', 'X-Portcullis-Csrf': csrf || '' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  if (!res.ok) throw new ApiError(res.status, data && data.code, data && data.message);
  return data;
}

const HOW = {
  not_loopback: 'No administrator key exists yet. Create one from the broker\'s host: open this page over loopback '
    + '(127.0.0.1 or ::1, without a proxy), or add a line to [admin] bootstrap_file, or set '
    + '[admin] dashboard_initial_password (or PORTCULLIS_DASHBOARD_PASSWORD), or run `portcullis ctl` there.',
  proxied: 'No administrator key exists yet. It cannot be created through a reverse proxy: open this page '
    + 'directly over loopback on the broker\'s host, or use [admin] bootstrap_file, '
    + '[admin] dashboard_initial_password, or `portcullis ctl`.',
};

function hideForms() {
  for (const id of ['login', 'first-admin', 'first-admin-refused', 'pw-change']) $(id).hidden = true;
}

function clearSecrets() {
  for (const id of ['login-pass', 'first-secret', 'first-confirm', 'pw-current', 'pw-new', 'pw-confirm']) $(id).value = '';
}

async function offerFirstAdmin() {
  let st;
  try { st = await own('GET', 'first-admin'); } catch (_) { return; }
  if (me) return;
  const refused = $('first-admin-refused');
  refused.dataset.why = st.why;
  if (st.open) {
    $('first-admin').hidden = false;
  } else if (HOW[st.why]) {
    refused.textContent = HOW[st.why];
    refused.hidden = false;
  }
}

function showLogin(message) {
  me = null;
  setCsrf('');
  clearSecrets();
  if (stopPage) { stopPage(); stopPage = null; }
  $('page').replaceChildren();
  $('nav').hidden = true;
  $('who').hidden = true;
  hideForms();
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('login-user').focus();
  offerFirstAdmin();
}

// A key made from the initial password: nothing but the change form.
function showPasswordChange(info) {
  me = null;
  setCsrf(info.csrf);
  pending = info;
  if (stopPage) { stopPage(); stopPage = null; }
  $('page').replaceChildren();
  $('nav').hidden = true;
  $('who').hidden = false;
  $('who-name').textContent = info.username;
  $('who-role').textContent = info.role;
  hideForms();
  $('pw-change').hidden = false;
  $('pw-error').textContent = '';
  $('pw-current').focus();
}


function showApp(info) {
  if (info.must_change) { showPasswordChange(info); return; }
  pending = null;
  me = info;
  setCsrf(info.csrf);
  hideForms();
  document.body.dataset.role = info.role;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = info.username;
  $('who-role').textContent = info.role;
  route();
}

function route() {
  if (!me) return;
  const name = (location.hash.replace(/^#\/?/, '') || 'overview').split('?')[0];
  const page = pages[name] ? name : 'overview';
  for (const a of $('nav').querySelectorAll('a')) {
    if (a.id === 'nav-' + page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (stopPage) stopPage();
  const root = $('page');
  root.replaceChildren();
  document.title = page[0].toUpperCase() + page.slice(1) + ' · Portcullis';
  stopPage = pages[page](root, { me, onAuthLost: () => showLogin('Your session ended; log in again.') });
}

$('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('login-error').textContent = '';
  $('login-submit').disabled = true;
  try {
    const pass = $('login-pass');
    const attempt = session.login($('login-user').value, pass.value);
    pass.value = '';
    showApp(await attempt);
  } catch (e) {
    const msg = e instanceof ApiError && e.status === 429
      ? 'Too many failed logins from this address; try again later.'
      : e instanceof ApiError && e.status === 401 ? 'Wrong API key or secret.' : 'Login failed: ' + e.message;
    $('login-error').textContent = msg;
  } finally {
    $('login-submit').disabled = false;
  }
});

function tooMany(e) {
  return e instanceof ApiError && e.status === 429 ? 'Too many failed attempts from this address; try again later.' : null;
}

$('first-admin').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const err = $('first-error');
  err.textContent = '';
  const secret = $('first-secret').value;
  const same = secret === $('first-confirm').value;
  $('first-confirm').value = '';
  if (!same) { err.textContent = 'The two secrets differ.'; return; }
  if ([...secret].length < 16) { err.textContent = 'The secret must be at least 16 characters.'; return; }
  $('first-submit').disabled = true;
  try {
    const attempt = own('POST', 'first-admin', { name: $('first-name').value, secret });
    $('first-secret').value = '';
    showApp(await attempt);
  } catch (e) {
    $('first-secret').value = '';
    err.textContent = tooMany(e) || (e instanceof ApiError && e.status === 409
      ? 'An administrator key exists now: log in with it.'
      : 'Not created: ' + e.message);
    if (e instanceof ApiError && (e.status === 409 || e.status === 403)) $('first-admin').hidden = true;
  } finally {
    $('first-submit').disabled = false;
  }
});

$('pw-change').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const err = $('pw-error');
  err.textContent = '';
  const current = $('pw-current').value;
  const next = $('pw-new').value;
  const same = next === $('pw-confirm').value;
  clearSecrets();
  if (!same) { err.textContent = 'The two new secrets differ.'; return; }
  if ([...next].length < 16) { err.textContent = 'The new secret must be at least 16 characters.'; return; }
  $('pw-submit').disabled = true;
  try {
    const info = await own('POST', 'password', { current, new: next }, pending ? pending.csrf : '');
    showApp(info);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && e.code !== 'BAD_USERNAME_OR_PWD') {
      showLogin('Your session ended; log in again.');
    } else {
      err.textContent = tooMany(e) || (e instanceof ApiError && e.status === 401
        ? 'Wrong current secret.' : 'Not changed: ' + e.message);
    }
  } finally {
    $('pw-submit').disabled = false;
  }
});

$('logout').addEventListener('click', async () => {
  try { await session.logout(); } catch (_) { /* ended anyway */ }
  showLogin('Logged out.');
});

window.addEventListener('hashchange', route);

session.current().then(showApp, () => showLogin(''));
