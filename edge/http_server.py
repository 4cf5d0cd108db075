"""A small HTTP server on the standard library that hostile clients cannot tie up, with the
access rules both device servers use (the kiosk page, /metrics).

- Request heads are gathered by the serving thread itself (one selector), not by a thread per
  connection: a client that sends half a request, or nothing, holds a socket and a few bytes,
  never a thread. Its head must arrive within `head_timeout_s` or it is closed; when
  `max_pending` clients are waiting, the one waiting longest is closed to make room.
- A complete request runs on its own thread, at most `max_workers` at once (the kiosk's event
  and preview streams are long-lived requests); beyond that the answer is 503 at once.
- While a request runs, a read or write that makes no progress for `idle_timeout_s` ends the
  connection, and a body must arrive within `idle_timeout_s` in all.
- One request per connection (HTTP/1.0, http.server's default), so every head passes the gate.
- The Host header must name this server (a web page elsewhere cannot reach it through DNS
  rebinding), and with a token every request must carry it (`Authorization: Bearer`, a cookie
  or `?token=`), compared in constant time.
- Content-Length is checked: digits only (else 400), at most `max_body_bytes` (else 413).
- Access log: logger "edge.http" at INFO, one line a request, the path without its query (which
  may carry the token); a client's mistake never logs a traceback, an internal error does.
"""
from __future__ import annotations

import hmac
import io
import logging
import re
import selectors
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Dict, Iterable, List, Optional, Set, Tuple
from urllib.parse import parse_qs, unquote

LOG = logging.getLogger("edge.http")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s'\"]*", re.IGNORECASE)


@dataclass(frozen=True)
class HttpLimits:
    """What a server's clients may hold. Heads come in milliseconds from a browser or a
    Prometheus scraper, so a few seconds is generous; bodies are small JSON at most."""

    max_workers: int = 32  # requests handled at once, each on a thread
    max_pending: int = 256  # connections whose request head has not all arrived (no thread each)
    head_timeout_s: float = 5.0  # from connect to the end of the request head
    idle_timeout_s: float = 10.0  # a read or write of a running request with no progress; a whole body
    max_head_bytes: int = 32768
    max_body_bytes: int = 4096
    backlog: int = 128  # listen queue (the kernel caps it at net.core.somaxconn)


def _host_key(host: str, port: int) -> Optional[str]:
    """'name:port' (lower case, IPv6 in brackets, port 80 when none) of a Host header or a
    server name; None when it is not a host."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        name += "]"
        if rest and not rest.startswith(":"):
            return None
        given_port = rest[1:]
    elif host.count(":") > 1:  # a bare IPv6 address (a server name, not a Host header)
        name, given_port = f"[{host}]", ""
    else:
        name, _, given_port = host.partition(":")
    name = name.rstrip(".")
    # ASCII digits only and at most 5 of them: int() of 20,000 digits (or of a Unicode
    # digit such as "\u00b2") raised inside the Host check (found by fuzzing, issue 21).
    if not name or (given_port and not (given_port.isascii() and given_port.isdigit() and len(given_port) <= 5)):
        return None
    return f"{name}:{int(given_port) if given_port else port}"


def _printable(text: str, limit: int = 200) -> str:
    """A client's text made safe for a log line: bounded, no control characters, no token
    (a malformed request line is quoted whole in http.server's messages)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text)[:limit])
    return _TOKEN_IN_TEXT.sub(r"\1...", text)


class BoundedHTTPServer(socketserver.TCPServer):
    """Binds at construction (OSError when it cannot); `start()` serves from a thread (or
    call `serve_forever()`), `close()` stops. Handlers derive from GuardedHandler.

    address: (host, port), port 0 picks a free one (see `.port`); token: required by every
    request when set; server_names: extra names a Host header may give (e.g. the device's
    DNS name), besides loopback names, the bound address and the address a request came to.
    """

    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], handler_class, token: Optional[str] = None,
                 server_names: Iterable[str] = (), limits: Optional[HttpLimits] = None):
        self.limits = limits or HttpLimits()
        self.request_queue_size = self.limits.backlog
        self.token = token or None
        self.bound_host = address[0]
        self.server_names = tuple(server_names)
        if ":" in self.bound_host:
            self.address_family = socket.AF_INET6
        self._workers = threading.BoundedSemaphore(self.limits.max_workers)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._thread: Optional[threading.Thread] = None
        self._wake_r, self._wake_w = socket.socketpair()  # shutdown() wakes the serving loop
        self._wake_r.setblocking(False)
        super().__init__(address, handler_class)  # on failure it calls server_close(): all closed
        self.port = self.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.bound_host}]" if ":" in self.bound_host else self.bound_host
        return f"http://{host}:{self.port}/"

    # ----- access ----------------------------------------------------------------------
    def allowed_hosts(self, local_address: Optional[str] = None) -> Set[str]:
        """The 'name:port' keys a Host header may give: loopback names, the bound address,
        `local_address` (where a request came to) and the configured server names."""
        names: List[str] = [*_LOOPBACK_NAMES, self.bound_host, *self.server_names]
        if local_address:
            names.append(local_address)
            if local_address.startswith("::ffff:"):  # IPv4 reaching a dual-stack socket
                names.append(local_address[7:])
        return {key for key in (_host_key(name, self.port) for name in names) if key is not None}

    def host_allowed(self, host: Optional[str], connection: Optional[socket.socket] = None) -> bool:
        """True when a request's Host header names this server."""
        if not host:
            return False
        local = None
        if connection is not None:
            try:
                local = connection.getsockname()[0]
            except OSError:
                pass
        key = _host_key(host, 80)
        return key is not None and key in self.allowed_hosts(local)

    def token_matches(self, candidates: Iterable[str]) -> bool:
        """True when one of the tokens a request gave is this server's (constant time each)."""
        if not self.token:
            return True
        wanted = self.token.encode("utf-8")
        found = False
        for given in candidates:
            found |= hmac.compare_digest(given.encode("utf-8", "replace"), wanted)
        return found

    # ----- serving ---------------------------------------------------------------------
    def start(self, name: str = "http") -> BoundedHTTPServer:
        self._thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5.0)
        self.server_close()

    def shutdown(self) -> None:
        """Stops serve_forever() and waits for it (requests running on threads finish alone)."""
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accepts, gathers request heads, hands complete ones to threads, until shutdown().
        (poll_interval: unused, the loop wakes when needed; kept for socketserver's signature.)"""
        self._stopped.clear()
        pending: Dict[socket.socket, _Pending] = {}  # oldest first: deadlines come in that order
        self.socket.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            try:
                while not self._stop.is_set():
                    timeout = None
                    if pending:
                        timeout = max(0.0, next(iter(pending.values())).deadline - time.monotonic())
                    for key, _ in selector.select(timeout):
                        if key.fileobj is self.socket:
                            self._accept(selector, pending)
                        elif key.fileobj is self._wake_r:
                            try:
                                self._wake_r.recv(64)
                            except OSError:
                                pass
                        elif key.fileobj in pending:
                            self._read_head(key.fileobj, selector, pending)
                    now = time.monotonic()
                    while pending and next(iter(pending.values())).deadline <= now:
                        self._drop(next(iter(pending)), selector, pending, "no complete request head in "
                                   f"{self.limits.head_timeout_s:g} s")
            finally:
                for sock in list(pending):
                    self._drop(sock, selector, pending, None)
                self._stopped.set()

    def _accept(self, selector, pending) -> None:
        for _ in range(64):  # a burst at a time, then the waiting heads get their turn
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors (EMFILE): make room
                if pending:
                    self._drop(next(iter(pending)), selector, pending, "closed to make room")
                else:
                    LOG.warning("cannot accept a connection: %s", exc.strerror or exc)
                    time.sleep(0.05)
                return
            if len(pending) >= self.limits.max_pending:
                self._drop(next(iter(pending)), selector, pending, "closed to make room (too many clients waiting)")
            sock.setblocking(False)
            waiting = _Pending(address, time.monotonic() + self.limits.head_timeout_s)
            pending[sock] = waiting
            selector.register(sock, selectors.EVENT_READ)

    def _read_head(self, sock: socket.socket, selector, pending) -> None:
        waiting = pending[sock]
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock, selector, pending, None)
            return
        start = max(0, len(waiting.head) - 3)
        waiting.head += data
        if _HEAD_END.search(waiting.head, start):
            selector.unregister(sock)
            del pending[sock]
            self._dispatch(sock, waiting)
        elif len(waiting.head) > self.limits.max_head_bytes:
            selector.unregister(sock)
            del pending[sock]
            self._refuse(sock, waiting.address, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                         f"request head over {self.limits.max_head_bytes} bytes")

    def _drop(self, sock: socket.socket, selector, pending, why: Optional[str]) -> None:
        waiting = pending.pop(sock)
        selector.unregister(sock)
        if why:
            LOG.info("%s %s", waiting.address[0], why)
        sock.close()

    def _refuse(self, sock: socket.socket, address, status: HTTPStatus, why: str) -> None:
        LOG.info("%s refused with %d: %s", address[0], status.value, why)
        try:  # a fresh connection's send buffer takes these few bytes without blocking
            sock.send(f"HTTP/1.0 {status.value} {status.phrase}\r\nConnection: close\r\n"
                      "Content-Length: 0\r\n\r\n".encode())
        except OSError:
            pass
        self.shutdown_request(sock)

    def _dispatch(self, sock: socket.socket, waiting: _Pending) -> None:
        if not self._workers.acquire(blocking=False):
            self._refuse(sock, waiting.address, HTTPStatus.SERVICE_UNAVAILABLE,
                         f"{self.limits.max_workers} requests running already")
            return
        try:
            threading.Thread(target=self._work, args=(sock, waiting), name="http request", daemon=True).start()
        except RuntimeError:  # the system has no thread left to give
            self._workers.release()
            self._refuse(sock, waiting.address, HTTPStatus.SERVICE_UNAVAILABLE, "no thread available")

    def _work(self, sock: socket.socket, waiting: _Pending) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(self.limits.idle_timeout_s)
            self.finish_request((sock, bytes(waiting.head)), waiting.address)
        except Exception:
            self.handle_error(sock, waiting.address)
        finally:
            self.shutdown_request(sock)
            self._workers.release()

    def handle_error(self, request, client_address) -> None:
        LOG.exception("internal error serving %s", client_address[0])


class _Pending:
    __slots__ = ("address", "deadline", "head")

    def __init__(self, address, deadline: float):
        self.address = address
        self.deadline = deadline
        self.head = bytearray()


class _RequestReader(io.RawIOBase):
    """A request's bytes: the head the server gathered, then the socket. While `deadline`
    (monotonic s) is set, a read past it raises socket.timeout."""

    def __init__(self, sock: socket.socket, head: bytes, idle_timeout_s: float):
        super().__init__()
        self.sock = sock
        self.head = head
        self.idle_timeout_s = idle_timeout_s
        self.deadline: Optional[float] = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("the request body did not arrive in time")
            self.sock.settimeout(min(self.idle_timeout_s, left))
        return self.sock.recv_into(buffer)


class _SocketWriter(io.BufferedIOBase):
    """Unbuffered writes with sendall (what socketserver's own writer does)."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._sock.sendall(data)
        with memoryview(data) as view:
            return view.nbytes


class GuardedHandler(BaseHTTPRequestHandler):
    """The handler of a BoundedHTTPServer. A do_GET/do_POST starts with `if not
    self.allowed(): return`; `read_body()` gives a checked body; `refuse()` is how
    refusals look (override it for JSON)."""

    server: BoundedHTTPServer
    token_cookie: Optional[str] = None  # a cookie that may carry the token (a page's), besides Bearer and ?token=
    token_hint = "this endpoint needs its token (Authorization: Bearer ...)"
    sys_version = ""

    def setup(self) -> None:
        sock, head = self.request
        self.request = self.connection = sock
        self.responded = False
        self._reader = _RequestReader(sock, head, self.server.limits.idle_timeout_s)
        self.rfile = io.BufferedReader(self._reader)
        self.wfile = _SocketWriter(sock)

    def handle(self) -> None:
        self.close_connection = True  # one request per connection: each head passes the server's gate
        try:
            self.handle_one_request()
        except OSError as exc:  # the client went away or stalled past idle_timeout_s
            self.log_error("connection ended: %s", exc.strerror or exc)
        except Exception:
            LOG.exception("internal error serving %s %s", self.command, self._path_for_log())
            if not self.responded:
                try:
                    self.send_error(500)
                except OSError:
                    pass

    def finish(self) -> None:
        self.rfile.close()

    # ----- access ----------------------------------------------------------------------
    def tokens_given(self) -> List[str]:
        """Every token the request carries: Authorization: Bearer, the token cookie, ?token=."""
        found = []
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            found.append(value.strip())
        if self.token_cookie:
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == self.token_cookie:
                    found.append(unquote(value))
        query = parse_qs(self.request_query).get("token")
        if query:
            found.append(query[-1])
        return found

    def allowed(self) -> bool:
        """True when the Host header names this server and (with a token) the request carries
        the token; otherwise the refusal is sent (403, 401) and False returned."""
        if not self.server.host_allowed(self.headers.get("Host"), self.connection):
            self.refuse(403, "unknown Host header")
            return False
        if not self.server.token_matches(self.tokens_given()):
            self.refuse(401, self.token_hint)
            return False
        return True

    def refuse(self, code: int, message: str) -> None:
        self.send_error(code, message)

    # ----- bodies ----------------------------------------------------------------------
    def read_body(self) -> Optional[bytes]:
        """The request's body (b"" without one), read within idle_timeout_s; None when it was
        refused and the refusal sent: 400 (bad Content-Length), 411 (chunked), 413 (too large)."""
        limits = self.server.limits
        if self.headers.get("Transfer-Encoding"):
            self.refuse(411, "send a Content-Length (chunked bodies are not accepted)")
            return None
        values = {v.strip() for v in self.headers.get_all("Content-Length") or ()}
        if not values:
            return b""
        text = values.pop()
        if values or not (text.isascii() and text.isdigit()):
            self.refuse(400, "bad Content-Length")
            return None
        if len(text) > 12 or int(text) > limits.max_body_bytes:
            self.refuse(413, f"the body is over {limits.max_body_bytes} bytes")
            return None
        self._reader.deadline = time.monotonic() + limits.idle_timeout_s
        try:
            body = self.rfile.read(int(text))
        finally:
            self._reader.deadline = None
            self.connection.settimeout(limits.idle_timeout_s)
        if len(body) < int(text):
            self.refuse(400, "the body ended before its Content-Length")
            return None
        return body

    # ----- log ---------------------------------------------------------------------------
    def send_response_only(self, code, message=None) -> None:
        self.responded = True
        super().send_response_only(code, message)

    @property
    def request_path(self) -> str:
        """The request target's path, without query or fragment. Not urlsplit: to it a target
        such as `//[` is a network location, and it raised ValueError (found by fuzzing)."""
        return (getattr(self, "path", "") or "").split("#", 1)[0].split("?", 1)[0]

    @property
    def request_query(self) -> str:
        return (getattr(self, "path", "") or "").split("#", 1)[0].partition("?")[2]

    def _path_for_log(self) -> str:
        return _printable(self.request_path)  # never the query: ?token=

    def log_request(self, code="-", size="-") -> None:
        LOG.info('%s "%s %s" %s', self.client_address[0], _printable(self.command or "-"),
                 self._path_for_log(), getattr(code, "value", code))

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's name)
        LOG.info("%s %s", self.client_address[0], _printable(format % args))
