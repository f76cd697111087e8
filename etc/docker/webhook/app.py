#!/usr/bin/env python3
"""Demo auth webhook for docker-compose (not for production): answers
Portcullis' HTTP provider in EMQX 5's format.

POST /auth  {"username": ..., "password": ..., "clientid": ...}
  -> {"result": "allow", "is_superuser": false} for a demo user with the
     right password, {"result": "deny"} for a wrong password, and
     {"result": "ignore"} for users it does not know (the next provider in
     the chain is asked).
POST /acl   {"username": ..., "topic": ..., "action": "publish"|"subscribe"}
  -> allow for topics under devices/<username>/, ignore otherwise.
"""

import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _password(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"webhook: {name} is not set")
    return value


# The same demo users as the other backends in docker-compose.yml, their
# passwords from the environment.
USERS = {
    "demo": (_password("MQTT_DEMO_PASSWORD"), False),
    "admin": (_password("MQTT_ADMIN_PASSWORD"), True),
}


class Handler(BaseHTTPRequestHandler):
    def _reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "max-age=60")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = min(int(self.headers.get("Content-Length") or 0), 65536)
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.send_error(400, "body is not JSON")
            return
        user = str(req.get("username") or "")
        if self.path == "/auth":
            known = USERS.get(user)
            if known is None:
                self._reply({"result": "ignore"})
            elif hmac.compare_digest(known[0].encode(), str(req.get("password") or "").encode()):
                self._reply({"result": "allow", "is_superuser": known[1]})
            else:
                self._reply({"result": "deny"})
        elif self.path == "/acl":
            topic = str(req.get("topic") or "")
            if user in USERS and topic.startswith(f"devices/{user}/"):
                self._reply({"result": "allow"})
            else:
                self._reply({"result": "ignore"})
        else:
            self.send_error(404)

    def log_message(self, fmt, *args):  # no passwords in logs: log path and status only
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
