// The pages, by the name in the URL (#/name): each module's render(root,
// ctx) draws into `root`, refreshes itself, and returns a function that
// stops it.
import { render as overview } from './page-overview.js';
import { render as clients } from './page-clients.js';
import { render as sessions } from './page-sessions.js';
import { render as subscriptions } from './page-subscriptions.js';
import { render as topics } from './page-topics.js';
import { render as retained } from './page-retained.js';
import { render as auth } from './page-auth.js';
import { render as explain } from './page-explain.js';
import { render as users } from './page-users.js';
import { render as banned } from './page-banned.js';
import { render as listeners } from './page-listeners.js';
import { render as modules } from './page-modules.js';
import { render as websocket } from './page-websocket.js';

export const pages = {
  overview,
  clients,
  sessions,
  subscriptions,
  topics,
  retained,
  auth,
  explain,
  users,
  banned,
  listeners,
  modules,
  websocket,
};
