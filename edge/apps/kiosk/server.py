"""The kiosk's HTTP side (standard library only): the page, its state and the preview.

    GET  /                  the page (static/index.html); ?token=... sets the token cookie
    GET  /static/<file>     kiosk.js, kiosk.css
    GET  /api/state         the controller's state (JSON)
    GET  /api/events        the same state as server-sent events: every change, 5-10 a
                            second while capturing, at least one a second otherwise
    GET  /api/stats         sessions run, preview cost, memory (for bench/ and staff)
    GET  /preview.mjpg      the live preview (MJPEG) while capturing; loopback clients only
    POST /api/start | /api/stop | /api/reset    (need the header `X-Kiosk-Request: 1`)

Access: with no token (the default) the server binds a loopback address only and
refuses requests whose Host header is not this server (a web page elsewhere cannot
reach it through DNS rebinding). With `kiosk.token` every request must carry it: the
`kiosk_token` cookie (set by opening /?token=...), `Authorization: Bearer ...` or
`?token=...`. POSTs need a custom header, which a cross-site form cannot send.
"""
from __future__ import annotations

import errno
import hmac
import json
import resource
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Optional
from urllib.parse import parse_qs, quote, unquote, urlsplit

from edge.config import is_loopback
from edge.errors import EdgeError

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


class KioskServer(ThreadingHTTPServer):
    """Binds at construction (a port in use is a one-line EdgeError); `serve_forever()`
    (or `start()` for a background thread) serves; `close()` stops."""

    daemon_threads = True

    def __init__(self, controller, host: str = "127.0.0.1", port: int = 8080, token: Optional[str] = None,
                 page: Optional[Dict[str, bytes]] = None):
        if not is_loopback(host) and not token:
            raise EdgeError(f"kiosk.host {host} is not a loopback address: set kiosk.token too, so that every "
                            "request must carry it (or use host 127.0.0.1)")
        self.controller = controller
        self.token = token
        self.page = page if page is not None else load_page()
        self.bound_host = host
        self.started_at = time.monotonic()
        self._thread: Optional[threading.Thread] = None
        if ":" in host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host, port), KioskHandler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise EdgeError(f"kiosk port {port} on {host} is in use (another kiosk running?); stop it or "
                                "choose another with --port N") from None
            raise EdgeError(f"kiosk cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.port = self.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.bound_host}]" if ":" in self.bound_host else self.bound_host
        return f"http://{host}:{self.port}/"

    def allowed_hosts(self):
        names = {self.bound_host, "localhost", "127.0.0.1", "[::1]"}
        if ":" in self.bound_host:
            names.add(f"[{self.bound_host}]")
        return {f"{name}:{self.port}" for name in names} | ({"localhost", "127.0.0.1"} if self.port == 80 else set())

    def start(self) -> KioskServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="kiosk http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5.0)
        self.server_close()


class KioskHandler(BaseHTTPRequestHandler):
    server: KioskServer
    server_version = "edge-kiosk"
    sys_version = ""

    def log_message(self, format, *args) -> None:  # noqa: A002 (the stdlib's name)
        pass  # one line per session goes to the log instead of one per request

    # ----- access --------------------------------------------------------------------
    def _query(self) -> Dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _token_given(self) -> Optional[str]:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:].strip()
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return unquote(value)
        return self._query().get("token")

    def _allowed(self) -> bool:
        server = self.server
        if server.token:
            given = self._token_given() or ""
            if not hmac.compare_digest(given.encode(), server.token.encode()):
                self._send_json(401, {"error": "this kiosk needs its token: open /?token=..."})
                return False
            return True
        if self.headers.get("Host", "") not in server.allowed_hosts():
            self._send_json(403, {"error": "unknown Host header"})
            return False
        return True

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
        if not self._allowed():
            return
        path = urlsplit(self.path).path
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
            elif path == "/preview.mjpg":
                self._preview()
            else:
                self._send_json(404, {"error": f"no such page: {path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away (reload, closed): nothing to do

    def do_POST(self) -> None:
        if not self._allowed():
            return
        if self.headers.get("X-Kiosk-Request") != "1":
            self._send_json(403, {"error": "missing X-Kiosk-Request header"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 4096))
        path = urlsplit(self.path).path
        controller = self.server.controller
        try:
            if path == "/api/start":
                try:
                    started, state = controller.start()
                except EdgeError as exc:
                    self._send_json(500, {"error": str(exc)})
                    return
                self._send_json(200, {"started": started, "state": state})
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
