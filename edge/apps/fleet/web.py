"""The care team's dashboard: served by `edge fleet serve` on edge's bounded HTTP server.

Every page but /login and /static/ needs a log-in (a page without one redirects to /login,
a POST without one gets 403). Forms carry the log-in's CSRF token (the log-in form a
double-submit cookie); cookies are HttpOnly and SameSite=Strict; every answer says
Cache-Control: no-store and a Content-Security-Policy without scripts. The Host header must
name the server (edge's BoundedHTTPServer: no DNS rebinding). Loopback by default; for the
care team's network a TLS reverse proxy in front (README: "The care team's side").
"""
from __future__ import annotations

import hmac
import secrets
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

from edge import BoundedHTTPServer, GuardedHandler, HttpLimits
from edge.apps.fleet.users import Users
from edge.apps.fleet.views import Views

HERE = Path(__file__).parent
SESSION_COOKIE = "fleet_session"
LOGIN_COOKIE = "fleet_login"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
STATIC = {"/static/fleet.css": ("fleet.css", "text/css; charset=utf-8")}


class Dashboard:
    """What the handler needs: views, users, templates, settings."""

    def __init__(self, views: Views, users: Users, login_hours: float, secure_cookies: bool = False):
        import jinja2

        self.views = views
        self.users = users
        self.login_hours = login_hours
        self.secure_cookies = secure_cookies
        self.templates = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                                            autoescape=True, undefined=jinja2.StrictUndefined)
        self.static = {path: ((HERE / "static" / name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}
        # What the pages say about the MQTT side (None: connected); `edge fleet serve` sets it.
        self.broker_problem: Callable[[], Optional[str]] = lambda: None

    def render(self, name: str, **values) -> bytes:
        return self.templates.get_template(name).render(**values).encode("utf-8")


class DashboardHandler(GuardedHandler):
    server: DashboardServer

    # ----- plumbing ------------------------------------------------------------------------
    def _cookies(self) -> Dict[str, str]:
        jar = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except Exception:  # a malformed Cookie header is the client's problem: no cookies
            return {}
        return {k: v.value for k, v in jar.items()}

    def _send(self, code: int, body: bytes, kind: str = "text/html; charset=utf-8",
              headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, where: str, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        self._send(303, b"", headers=(("Location", where),) + headers)

    def _cookie(self, name: str, value: str, max_age: int) -> Tuple[str, str]:
        secure = "; Secure" if self.server.dashboard.secure_cookies else ""
        return "Set-Cookie", f"{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"

    def refuse(self, code: int, message: str) -> None:
        self._send(code, f"{code}: {message}\n".encode(), "text/plain; charset=utf-8")

    def _login(self) -> Optional[Tuple[str, str, str]]:
        token = self._cookies().get(SESSION_COOKIE)
        found = self.server.dashboard.users.session(token)
        return None if found is None else (found[0], found[1], token)

    def _form(self) -> Optional[Dict[str, str]]:
        body = self.read_body()
        if body is None:
            return None
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            self.refuse(400, "the form is not valid")
            return None
        return {k: v[-1] for k, v in fields.items()}

    # ----- GET -----------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        if not self.allowed():
            return
        d = self.server.dashboard
        url = urlsplit(self.path)
        if url.path in d.static:
            body, kind = d.static[url.path]
            self._send(200, body, kind)
            return
        if url.path == "/favicon.ico":
            self.refuse(404, "no icon")
            return
        if url.path == "/login":
            # The nonce the browser holds already, if any: a second tab or a stray request to /login
            # must not invalidate the form on screen.
            held = self._cookies().get(LOGIN_COOKIE, "")
            nonce = held if 20 <= len(held) <= 64 and held.replace("-", "").replace("_", "").isalnum() \
                else secrets.token_urlsafe(24)
            self._send(200, d.render("login.html", user=None, error=None, login_csrf=nonce, problem=None),
                       headers=(self._cookie(LOGIN_COOKIE, nonce, 3600),))
            return
        login = self._login()
        if login is None:
            self._redirect("/login")
            return
        user, csrf, _token = login
        query = parse_qs(url.query)
        page = dict(user=user, csrf=csrf, silent_hours=d.views.silent_hours, problem=d.broker_problem())
        now = time.time()
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        if url.path == "/":
            number = max(0, _int(query.get("page", ["0"])[-1]))
            body = d.render("people.html", alerts=d.views.gateways(now, only_alerts=True), counts=d.views.counts(now),
                            people=d.views.people(number), page=number, per_page=d.views.per_page, **page)
        elif url.path == "/gateways":
            body = d.render("gateways.html", gateways=d.views.gateways(now), **page)
        elif parts[0] == "person" and len(parts) == 3:
            days = 30 if query.get("days", ["90"])[-1] == "30" else 90
            person = d.views.person(parts[1], parts[2], days)
            if person is None:
                self.refuse(404, "no such person")
                return
            body = d.render("person.html", p=person, **page)
        elif url.path == "/kiosks":
            body = d.render("kiosks.html", site=None, sites=d.views.sites(), sessions=[], **page)
        elif parts[0] == "kiosks" and len(parts) == 2:
            body = d.render("kiosks.html", site=parts[1], sites=[], sessions=d.views.sessions(parts[1]), **page)
        elif url.path == "/audit":
            body = d.render("audit.html", rows=d.views.audit(), **page)
        elif url.path == "/dead-letters":
            from edge.apps.fleet.store import DEAD_PAYLOAD_CHARS

            body = d.render("dead.html", rows=d.views.dead_letters(), keep=DEAD_PAYLOAD_CHARS, **page)
        else:
            self.refuse(404, "no such page")
            return
        self._send(200, body)

    # ----- POST ----------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        if not self.allowed():
            return
        d = self.server.dashboard
        path = urlsplit(self.path).path
        if path == "/login":
            form = self._form()
            if form is None:
                return
            nonce = self._cookies().get(LOGIN_COOKIE, "")
            if not nonce or not hmac.compare_digest(nonce, form.get("csrf", "")):
                self.refuse(403, "the log-in form has expired; open /login again")
                return
            found = d.users.log_in(form.get("user", ""), form.get("password", ""), d.login_hours)
            if found is None:
                fresh = secrets.token_urlsafe(24)
                body = d.render("login.html", user=None, error="Wrong user name or password.", login_csrf=fresh,
                                problem=None)
                self._send(401, body, headers=(self._cookie(LOGIN_COOKIE, fresh, 3600),))
                return
            token, _csrf = found
            self._redirect("/", (self._cookie(SESSION_COOKIE, token, int(d.login_hours * 3600)),
                                 self._cookie(LOGIN_COOKIE, "", 0)))
            return
        login = self._login()
        if login is None:
            self.refuse(403, "log in first")
            return
        user, csrf, token = login
        form = self._form()
        if form is None:
            return
        if not hmac.compare_digest(form.get("csrf", ""), csrf):
            self.refuse(403, "the form's CSRF token does not match this log-in; reload the page")
            return
        if path == "/logout":
            d.users.log_out(token)
            self._redirect("/login", (self._cookie(SESSION_COOKIE, "", 0),))
        elif path == "/ack":
            note = form.get("note", "").strip()
            if not note or len(note) > 2000:
                self.refuse(400, "an acknowledgement needs a note (at most 2000 characters)")
                return
            flag = d.views.acknowledge(_int(form.get("flag", "")), user, note)
            if flag is None:
                self.refuse(404, "no such flag")
                return
            self._redirect(f"/person/{quote(flag['gateway'], safe='')}/{quote(flag['person'], safe='')}")
        else:
            self.refuse(404, "no such form")


def _int(text: str) -> int:
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else -1


class DashboardServer(BoundedHTTPServer):
    def __init__(self, host: str, port: int, dashboard: Dashboard, server_names=()):
        self.dashboard = dashboard
        super().__init__((host, port), DashboardHandler, None, server_names, HttpLimits(max_body_bytes=8192))
