// Login, navigation (#/page), and the page currently shown.
import { session, setCsrf, ApiError } from './api.js';
import { pages } from './pages.js';

const $ = (id) => document.getElementById(id);
let me = null;
let stopPage = null;

function showLogin(message) {
  me = null;
  setCsrf('');
  if (stopPage) { stopPage(); stopPage = null; }
  $('page').replaceChildren();
  $('nav').hidden = true;
  $('who').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('login-user').focus();
}

function showApp(info) {
  me = info;
  setCsrf(info.csrf);
  document.body.dataset.role = info.role;
  $('login').hidden = true;
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
    const info = await session.login($('login-user').value, $('login-pass').value);
    $('login-pass').value = '';
    showApp(info);
  } catch (e) {
    const msg = e instanceof ApiError && e.status === 429
      ? 'Too many failed logins from this address; try again later.'
      : e instanceof ApiError && e.status === 401 ? 'Wrong API key or secret.' : 'Login failed: ' + e.message;
    $('login-error').textContent = msg;
  } finally {
    $('login-submit').disabled = false;
  }
});

$('logout').addEventListener('click', async () => {
  try { await session.logout(); } catch (_) { /* ended anyway */ }
  showLogin('Logged out.');
});

window.addEventListener('hashchange', route);

session.current().then(showApp, () => showLogin(''));
