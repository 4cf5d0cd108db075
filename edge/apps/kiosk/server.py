"""The kiosk's HTTP side (standard library only): the page, its state and the preview.

    GET  /                  the page (static/index.html); ?token=... sets the token cookie
    GET  /static/<file>     kiosk.js, kiosk.css
    GET  /api/state         the controller's state (JSON)
    GET  /api/events        the same state as server-sent events: every change, 5-10 a
                            second while capturing, at least one a second otherwise
    GET  /api/stats         sessions run, preview cost, memory (for bench/ and staff)
    GET  /preview.mjpg      the live preview (MJPEG) while capturing; loopback clients only
    GET  /api/strings       the page's words in the profile's language (strings.py)
    POST /api/start         {"research": true|false}: the visitor's consent, and the optional
                            second opt-in (labelled pairs for training)
    POST /api/answer        {"item": 0..7, "value": 0..3}: one PHQ-8 answer
    POST /api/back | /api/stop | /api/reset
    (every POST needs the header `X-Kiosk-Request: 1`)

Access (edge.http_server): requests whose Host header is not this server are refused (a web
page elsewhere cannot reach it through DNS rebinding). With no token (the default) the server
binds a loopback address only; with `kiosk.token` every request must carry it: the
`kiosk_token` cookie (set by opening /?token=...), `Authorization: Bearer ...` or
`?token=...`, except from a loopback client on the device itself (the kiosk's own browser)
that is not a proxy's forwarded request (no X-Forwarded-For / Forwarded header), unless
`kiosk.loopback_without_token` is false. The token is a password: over a LAN, put TLS in
front (README: a local reverse proxy), never plain HTTP beyond the device. POSTs need a
custom header, which a cross-site form cannot send. Clients that
send half a request, or too many at once, cannot tie the server up (see edge.http_server).
"""
from __future__ import annotations

import errno
import json
import resource
import time
from pathlib import Path
from typing import Dict, Iterable, Optional
from urllib.parse import quote

from edge import BoundedHTTPServer, EdgeError, GuardedHandler, HttpLimits, is_loopback

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
              "/static/kiosk.js": ("kiosk.js", "text/javascript; charset=utf-8"),
              "/static/kiosk.css": ("kiosk.css", "text/css; charset=utf-8")}
EVENT_MIN_S = 0.1  # at most 10 events a second per page
EVENT_CAPTURE_MAX_S = 0.15  # while capturing, at least this often (about 7 a second)
EVENT_IDLE_MAX_S = 1.0  # otherwise at least once a second (countdowns, liveness)
COOKIE = "kiosk_token"
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                    ("Content-Security-Policy", "default-src 'self'; img-src 'self'; frame-ancestors 'none'"),
                    ("Cache-Control", "no-store"))


def load_page(static_dir: Path = STATIC_DIR) -> Dict[str, bytes]:
    """The page's files by name; a missing one is a one-line EdgeError (before serving)."""
    files = {}
    for name, _ in PAGE_FILES.values():
        path = Path(static_dir) / name
        try:
            files[name] = path.read_bytes()
        except OSError:
            raise EdgeError(f"kiosk page file {path} is missing or unreadable; reinstall the package "
                            "(pip install .) so that its page files are there") from None
    return files


def _rss_mb() -> Optional[float]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None


class KioskServer(BoundedHTTPServer):
    """Binds at construction (a port in use is a one-line EdgeError); `serve_forever()`
    (or `start()` for a background thread) serves; `close()` stops.

    server_names: names besides this server's addresses that a Host header may give (the
    device's DNS name when the page is opened by name); limits: see edge.http_server."""

    def __init__(self, controller, host: str = "127.0.0.1", port: int = 8080, token: Optional[str] = None,
                 page: Optional[Dict[str, bytes]] = None, server_names: Iterable[str] = (),
                 limits: Optional[HttpLimits] = None, loopback_without_token: bool = True):
        if not is_loopback(host) and not token:
            raise EdgeError(f"kiosk.host {host} is not a loopback address: set kiosk.token too, so that every "
                            "request must carry it (or use host 127.0.0.1)")
        self.controller = controller
        self.loopback_without_token = bool(loopback_without_token)
        self.page = page if page is not None else load_page()
        self.started_at = time.monotonic()
        try:
            super().__init__((host, port), KioskHandler, token, server_names, limits)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise EdgeError(f"kiosk port {port} on {host} is in use (another kiosk running?); stop it or "
                                "choose another with --port N") from None
            raise EdgeError(f"kiosk cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    def start(self, name: str = "kiosk http") -> KioskServer:
        return super().start(name)


class KioskHandler(GuardedHandler):
    server: KioskServer
    server_version = "edge-kiosk"
    token_cookie = COOKIE
    token_hint = "this kiosk needs its token: open /?token=..."

    def refuse(self, code: int, message: str) -> None:
        self._send_json(code, {"error": message})

    def allowed(self) -> bool:
        """As GuardedHandler's, but the device's own browser (a loopback client, no proxy's
        forwarding header) needs no token when the profile allows it."""
        if self.server.token and self.server.loopback_without_token and self._on_device():
            if not self.server.host_allowed(self.headers.get("Host"), self.connection):
                self.refuse(403, "unknown Host header")
                return False
            return True
        return super().allowed()

    def _on_device(self) -> bool:
        forwarded = self.headers.get("X-Forwarded-For") or self.headers.get("Forwarded")
        return is_loopback(self.client_address[0].replace("::ffff:", "")) and not forwarded

    def _json_body(self) -> Optional[Dict]:
        """The POST's JSON object ({} without a body); None when refused (400 sent)."""
        body = self.read_body()
        if body is None:
            return None
        if not body.strip():
            return {}
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
        if not isinstance(data, dict):
            self._send_json(400, {"error": "the body must be a JSON object"})
            return None
        return data

    # ----- responses -----------------------------------------------------------------
    def _send(self, code: int, body: bytes, content_type: str, extra=()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS + tuple(extra):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, code: int, data: Dict) -> None:
        self._send(code, json.dumps(data).encode(), "application/json")

    # ----- routes --------------------------------------------------------------------
    def do_GET(self) -> None:
        if not self.allowed():
            return
        path = self.request_path
        controller = self.server.controller
        try:
            if path in PAGE_FILES:
                name, kind = PAGE_FILES[path]
                extra = ()
                if path == "/" and self.server.token:
                    extra = (("Set-Cookie", f"{COOKIE}={quote(self.server.token, safe='')}; HttpOnly; SameSite=Strict; "
                                            "Path=/"),)
                self._send(200, self.server.page[name], kind, extra)
            elif path == "/api/state":
                self._send_json(200, controller.state())
            elif path == "/api/events":
                self._events()
            elif path == "/api/stats":
                self._send_json(200, self._stats())
            elif path == "/api/strings":
                self._send_json(200, {"language": controller.kiosk.language, "strings": controller.strings})
            elif path == "/preview.mjpg":
                self._preview()
            else:
                self._send_json(404, {"error": f"no such page: {path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away (reload, closed): nothing to do

    def do_POST(self) -> None:
        if not self.allowed():
            return
        if self.headers.get("X-Kiosk-Request") != "1":
            self._send_json(403, {"error": "missing X-Kiosk-Request header"})
            return
        body = self._json_body()
        if body is None:
            return
        path = self.request_path
        controller = self.server.controller
        try:
            if path == "/api/start":
                try:
                    started, state = controller.start(research=body.get("research") is True)
                except EdgeError as exc:
                    self._send_json(500, {"error": str(exc)})
                    return
                self._send_json(200, {"started": started, "state": state})
            elif path == "/api/answer":
                taken, state = controller.answer(body.get("item"), body.get("value"))
                self._send_json(200 if taken else 409, {"taken": taken, "state": state})
            elif path == "/api/back":
                self._send_json(200, {"state": controller.back()})
            elif path == "/api/stop":
                self._send_json(200, {"state": controller.stop()})
            elif path == "/api/reset":
                self._send_json(200, {"state": controller.reset()})
            else:
                self._send_json(404, {"error": f"no such action: {path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _stats(self) -> Dict:
        controller = self.server.controller
        preview = controller.preview
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"sessions": controller.sessions_run, "last_session_id": controller.last_session_id,
                "last_timings": controller.last_timings, "rss_mb": _rss_mb(),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                "uptime_s": round(time.monotonic() - self.server.started_at, 1),
                "models_load_s": round(controller.screener.load_s, 3),
                "preview": None if preview is None else {"frames_encoded": preview.frames_encoded,
                                                         "cpu_s": round(preview.cpu_s, 4),
                                                         "fps": preview.fps, "width": preview.width}}

    def _events(self) -> None:
        controller = self.server.controller
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(b"retry: 500\n\n")
        version, sent_at = -1, 0.0
        while not controller.closing:
            wait = EVENT_MIN_S - (time.monotonic() - sent_at)
            if wait > 0:
                time.sleep(wait)
            state, new_version = controller.wait_change(version, EVENT_CAPTURE_MAX_S)
            limit = EVENT_CAPTURE_MAX_S if state["phase"] in ("capture", "saving") else EVENT_IDLE_MAX_S
            if new_version == version and time.monotonic() - sent_at < limit:
                continue
            version = new_version
            self.wfile.write(b"data: " + json.dumps(state).encode() + b"\n\n")
            self.wfile.flush()
            sent_at = time.monotonic()

    def _preview(self) -> None:
        controller = self.server.controller
        preview = controller.preview
        client = self.client_address[0]
        if not is_loopback(client.replace("::ffff:", "")):
            self._send_json(403, {"error": "the preview is shown on this device only"})
            return
        if preview is None or not preview.live:
            self._send_json(404, {"error": "no preview now (it is shown while capturing)"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        self.end_headers()
        seq, period, generation = 0, 1.0 / preview.fps, preview.generation
        while not controller.closing:  # this session's frames only: the stream ends with it
            started = time.monotonic()
            jpeg, seq = preview.next_jpeg(seq, timeout_s=1.0, generation=generation)
            if jpeg is None:
                if not preview.current(generation):
                    break
                continue
            cpu = time.thread_time()
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                             + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
            self.wfile.flush()
            preview.add_cpu(time.thread_time() - cpu)
            left = period - (time.monotonic() - started)
            if left > 0:
                time.sleep(left)
