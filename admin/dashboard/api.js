// The admin API, through relative URLs (the page lives at <base>dashboard/),
// with the session cookie and, on writes, the session's CSRF token.

let csrf = '';

export function setCsrf(token) {
  csrf = token || '';
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || String(status));
    this.status = status;
    this.code = code;
  }
}

async function request(method, url, body) {
  // Sent on reads too (empty is fine there): it tells the API not to answer
  // 401 with a Basic challenge, which would open the browser's own dialog.
  const headers = { Accept: 'application/json', 'X-Portcullis-Csrf': csrf };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch (_) { data = text; }
  }
  if (!res.ok) {
    const code = data && data.code;
    const message = data && data.message;
    throw new ApiError(res.status, code, message);
  }
  return data;
}

// `path` is under /api/v5, e.g. 'stats'; each part of it the caller built
// with encodeURIComponent.
export const api = {
  get: (path) => request('GET', '../api/v5/' + path),
  del: (path) => request('DELETE', '../api/v5/' + path),
  post: (path, body) => request('POST', '../api/v5/' + path, body),
  put: (path, body) => request('PUT', '../api/v5/' + path, body),
};

export const session = {
  current: () => request('GET', 'session'),
  login: (username, password) => request('POST', 'login', { username, password }),
  logout: () => request('POST', 'logout'),
};
