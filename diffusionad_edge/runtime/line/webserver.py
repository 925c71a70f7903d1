"""The small web server of ``dae run --http`` and ``dae serve``: the live page, the MJPEG stream,
``/stats`` (JSON), ``/metrics`` (Prometheus), ``POST /review`` (the page's review buttons, when review
is on) and, for ``dae serve``, ``POST /predict``.

Python's own ``ThreadingHTTPServer``: one thread per connection, no dependency. It only ever reads
the :class:`~.livestate.LiveState` the run loop fills, so a slow or stuck browser never holds up
inference (an MJPEG client gets the newest frame when it is ready for one; frames in between are
skipped). It binds to localhost unless told otherwise; with a token every request must carry it
(``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` for a browser).
"""

from __future__ import annotations

import errno
import hmac
import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from ...errors import ConfigError, DaeError
from .livestate import LiveState, prometheus
from .reviewing import LineReview, ReviewRefused

#: the ``--http`` address when only a port is given
DEFAULT_HOST = "127.0.0.1"
_ALL_INTERFACES = ("0.0.0.0", "::", "")


class ServerError(DaeError):
    """The web server cannot start (port in use, address not available)."""


class RequestError(Exception):
    """A request that gets a JSON error: ``status``, one line of ``message`` and optional ``headers``
    (``Retry-After`` on a 503)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def parse_bind(text: str) -> tuple[str, int]:
    """``:8080`` / ``8080`` -> localhost:8080; ``0.0.0.0:8080``, ``host:8080``, ``[::]:8080`` as given."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--http {text!r}: expected [HOST]:PORT, e.g. :8080 or 0.0.0.0:8080")
    return host, int(port)


def exposed_warning(host: str, token: str | None) -> str | None:
    """The warning for a server every machine on the network can reach without a token."""
    if host in _ALL_INTERFACES and not token:
        return (f"the web server listens on all interfaces ({host or '*'}) without a token: anyone on the network can use it; "
                "set DAE_HTTP_TOKEN (or --http-token) or bind to one address")
    return None


#: the largest ``POST /review`` body (a few bytes of JSON)
_REVIEW_BODY = 64 << 10

#: the accept backlog when nothing else is said (``socketserver``'s default of 5 resets a burst)
DEFAULT_BACKLOG = 128


def backlog_for(max_waiting: int) -> int:
    """The listen backlog for ``dae serve`` with ``--max-waiting N``: connections of a burst wait in the
    kernel's accept queue until the server thread takes them (then they get an answer, 503 when more
    than N already wait), so it must hold a burst many times N deep; a full accept queue drops or
    resets connections instead of answering them. (Linux caps it at ``net.core.somaxconn``.)"""
    return max(DEFAULT_BACKLOG, 8 * max_waiting)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stream that never ends does not hold the process at exit
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: "WebApp", backlog: int = DEFAULT_BACKLOG):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.request_queue_size = backlog  # read by server_activate() inside the base constructor
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer is not worth a traceback on the run's stderr.
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class WebApp:
    """The routes' state: the live state, an optional predictor (``dae serve``), the review (None: the
    review buttons are off) and the token."""

    def __init__(self, state: LiveState, token: str | None = None, predictor: Any = None, max_body: int = 16 << 20,
                 review: LineReview | None = None):
        self.state, self.token, self.predictor, self.max_body = state, token, predictor, max_body
        self.review = review
        if review is not None:
            state.info["review"] = True  # the page shows the buttons
            state.providers["review"] = review.stats
        #: answers sent, by HTTP status: every one (401, 404, 413, 503, ... and the GETs) is counted
        self.requests: dict[int, int] = {}
        #: POST requests being handled now (a stop waits for them to be answered)
        self.active = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        if predictor is not None:
            state.providers["requests"] = self._request_stats

    def count(self, status: int) -> None:
        with self._lock:
            self.requests[status] = self.requests.get(status, 0) + 1

    def begin(self) -> None:
        with self._lock:
            self.active += 1

    def end(self) -> None:
        with self._lock:
            self.active -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no POST is being handled (at most ``timeout`` s); False when some still are."""
        with self._lock:
            return self._idle.wait_for(lambda: self.active == 0, timeout)

    def _request_stats(self) -> dict[str, Any]:
        with self._lock:
            by_status = dict(sorted(self.requests.items()))
        return {"total": sum(by_status.values()), "by_status": by_status,
                "waiting": self.predictor.waiting if self.predictor is not None else 0}

    def authorised(self, headers: Any, query: dict[str, list[str]]) -> bool:
        if not self.token:
            return True
        given = (headers.get("Authorization") or "").removeprefix("Bearer ").strip() or (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())


class WebServer:
    """A running server (its own thread); :meth:`close` stops it and ends the streams."""

    def __init__(self, app: WebApp, host: str, port: int, backlog: int = DEFAULT_BACKLOG):
        try:
            self.httpd = _Server((host, port), app, backlog)
        except OSError as exc:
            reason = "address already in use (another program, or another dae, listens there)" if exc.errno == errno.EADDRINUSE \
                else (exc.strerror or str(exc))
            raise ServerError(f"cannot listen on {host}:{port}: {reason}; choose another with --http HOST:PORT") from None
        self.app = app
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="web", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host = "localhost" if self.host in _ALL_INTERFACES + (DEFAULT_HOST,) else self.host
        return f"http://{host}:{self.port}/"

    def close(self, drain_s: float = 0.0) -> None:
        """Stop accepting, then wait up to ``drain_s`` seconds for the requests being handled to be
        answered (``dae serve`` on Ctrl-C or SIGTERM: an accepted request is answered, not cut)."""
        self.app.state.close()  # ends the MJPEG loops
        self.httpd.shutdown()
        if drain_s > 0:
            self.app.wait_idle(drain_s)
        self.httpd.server_close()
        self.thread.join(timeout=5)


def start_server(bind: str, state: LiveState, token: str | None = None, predictor: Any = None, max_body: int = 16 << 20,
                 warn: Callable[[str], None] | None = None, backlog: int = DEFAULT_BACKLOG,
                 review: LineReview | None = None) -> WebServer:
    """Parse ``bind`` (``--http``), warn when exposed without a token, start serving (with the review
    buttons when ``review`` is given)."""
    host, port = parse_bind(bind)
    message = exposed_warning(host, token)
    if message and warn is not None:
        warn(message)
    return WebServer(WebApp(state, token, predictor, max_body, review), host, port, backlog)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "dae"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        pass  # the run's own output is the log; requests are counted in /stats

    # -- plumbing ------------------------------------------------------------------------------

    def send_response(self, code: int, message: str | None = None) -> None:
        # Every answer passes here (our routes, the stream, and http.server's own errors such as 400
        # for a malformed request line or 501 for an unknown method): counted once, by status.
        self.server.app.count(int(code))
        super().send_response(code, message)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any, extra: dict[str, str] | None = None) -> None:
        self._send(status, (json.dumps(value) + "\n").encode(), "application/json", extra)

    def _error(self, status: int, message: str, extra: dict[str, str] | None = None) -> None:
        self._json(status, {"error": message, "status": status}, extra)

    def _route(self) -> tuple[str, dict[str, list[str]]] | None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path != "/health" and not self.server.app.authorised(self.headers, query):
            if self.command == "POST":
                self._discard_body()
            self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong token (Authorization: Bearer TOKEN, or ?token=TOKEN)")
            return None
        return parts.path, query

    # -- GET -----------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        routed = self._route()
        if routed is None:
            return
        path, query = routed
        app = self.server.app
        state = app.state
        if path == "/":
            from .webpage import page

            self._send(HTTPStatus.OK, page(state.info).encode(), "text/html; charset=utf-8")
        elif path == "/health":
            self._json(HTTPStatus.OK, {"status": "ok"})
        elif path == "/stats":
            self._json(HTTPStatus.OK, state.stats())
        elif path == "/metrics":
            self._send(HTTPStatus.OK, prometheus(state.stats()).encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif path in ("/stream.mjpg", "/frame.jpg"):
            camera = (query.get("camera") or [""])[0] or next(iter(state.camera_names), "")
            if camera not in state.camera_names:
                self._error(HTTPStatus.NOT_FOUND, f"no camera {camera!r} (cameras: {', '.join(state.camera_names) or 'none yet'})")
            elif path == "/frame.jpg":
                _, jpeg = state.newest_frame(camera, timeout=0)
                if jpeg is None:
                    self._error(HTTPStatus.NOT_FOUND, f"no frame from {camera!r} yet")
                else:
                    self._send(HTTPStatus.OK, jpeg, "image/jpeg")
            else:
                self._stream(camera)
        elif path.startswith("/thumb/") and path.endswith(".jpg") and path[7:-4].isdigit():
            jpeg = state.thumbnail(int(path[7:-4]))
            if jpeg is None:
                self._error(HTTPStatus.NOT_FOUND, "no such thumbnail (only the last few NG frames are kept)")
            else:
                self._send(HTTPStatus.OK, jpeg, "image/jpeg")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    do_HEAD = do_GET  # noqa: N815

    def _stream(self, camera: str) -> None:
        """MJPEG: multipart/x-mixed-replace, one part per new overlay until the client or the run goes."""
        state = self.server.app.state
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        state.watch(camera, +1)
        seq = 0
        try:
            while not state.closed:
                new_seq, jpeg = state.newest_frame(camera, after=seq, timeout=1.0)
                if jpeg is None or new_seq == seq:
                    continue
                seq = new_seq
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n"
                                 + jpeg + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass  # the browser went away
        finally:
            state.watch(camera, -1)

    # -- POST /predict -------------------------------------------------------------------------

    def _discard_body(self) -> None:
        """Before answering a POST whose body is not used (401, 404): read the body away, or close the
        connection after the answer when it is too large to read. Left in the stream, the body would be
        parsed as the next request (a stray 400), and a socket closed with unread data is reset."""
        length = (self.headers.get("Content-Length") or "").strip()
        if length.isdigit() and int(length) <= self.server.app.max_body:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802
        routed = self._route()
        if routed is None:
            return
        path, query = routed
        app = self.server.app
        if path == "/review":
            self._review(app)
            return
        if path != "/predict" or app.predictor is None:
            self._discard_body()
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {path}" + ("" if app.predictor else " (POST /predict is dae serve's)"))
            return
        app.begin()
        try:
            # The body is read even when the answer will be 503: closing a socket with unread data
            # makes the kernel reset the connection, and the client would see an error, not a 503.
            body = self._read_body(app.max_body)
            image = _image_part(body, self.headers.get("Content-Type", ""))
            overlay = (query.get("overlay") or ["0"])[0].lower() in ("1", "true", "yes", "png")
            result = app.predictor.predict(image, overlay=overlay)
            self._json(HTTPStatus.OK, result)
        except RequestError as exc:
            self._error(exc.status, exc.message, exc.headers)
        finally:
            app.end()

    def _review(self, app: WebApp) -> None:
        """``POST /review`` with JSON ``{"thumbnail": ID, "verdict": "good"|"defect"}`` (an NG thumbnail's
        frame) or ``{"camera": NAME, "verdict": ...}`` (that camera's newest frame)."""
        if app.review is None:
            self._discard_body()
            self._error(HTTPStatus.NOT_FOUND, "review is off for this run (started with --no-review)")
            return
        app.begin()
        try:
            try:
                request = json.loads(self._read_body(_REVIEW_BODY, "empty request body: send JSON"))
            except ValueError:
                raise RequestError(HTTPStatus.BAD_REQUEST, 'not JSON: send {"thumbnail": ID, "verdict": "good"} '
                                   'or {"camera": NAME, "verdict": "good"}') from None
            if not isinstance(request, dict):
                raise RequestError(HTTPStatus.BAD_REQUEST, "send a JSON object")
            verdict = request.get("verdict")
            thumb, camera = request.get("thumbnail"), request.get("camera")
            if isinstance(thumb, int) and not isinstance(thumb, bool):
                saved = app.review.review_thumbnail(app.state, thumb, str(verdict))
            elif isinstance(camera, str):
                saved = app.review.review_current(app.state, camera, str(verdict))
            else:
                raise RequestError(HTTPStatus.BAD_REQUEST, 'name the frame: "thumbnail": ID (an integer) or "camera": NAME')
            self._json(HTTPStatus.OK, saved)
        except ReviewRefused as exc:
            self._error(exc.status, exc.message)
        except RequestError as exc:
            self._error(exc.status, exc.message, exc.headers)
        finally:
            app.end()

    def _read_body(self, limit: int, empty: str = "empty request body: send an image file") -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length (e.g. curl --data-binary @part.png)")
        n = int(length)
        if n > limit:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body of {n} bytes is over the limit of {limit} bytes (--max-body-mb)")
        if n == 0:
            raise RequestError(HTTPStatus.BAD_REQUEST, empty)
        return self.rfile.read(n)


def _image_part(body: bytes, content_type: str) -> bytes:
    """The image: the whole body, or the first file of a multipart/form-data body (curl -F image=@part.png)."""
    if not content_type.lower().startswith("multipart/form-data"):
        return body
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    for part in message.iter_parts() if message.is_multipart() else []:
        data = part.get_payload(decode=True)
        if data:
            return data
    raise RequestError(HTTPStatus.BAD_REQUEST, "multipart body without a file part: send one image (curl -F image=@part.png)")
