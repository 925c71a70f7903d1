"""``dae run --mqtt``: one JSON message per decision to an MQTT broker, and a retained status.

Topics under the URL's path (``mqtt://host:1883/line4/station2`` -> prefix ``line4/station2``):

- ``PREFIX/events/CAMERA``: one message per decision, the fields of an ``--events`` line plus ``camera``;
- ``PREFIX/status`` (retained): ``online`` with the model, its version, thresholds, cameras and FPS
  (refreshed every ``status_interval_s``), ``offline`` at a clean stop, and the same ``offline`` as the
  last will, which the broker publishes when the process dies or the network goes.

Inference never waits for the network: :meth:`MqttPublisher.publish_event` appends to a bounded
queue and returns; a sender thread hands messages to the client (paho-mqtt, the ``[line]`` extra)
only while connected, so a broker that goes away leaves them in the queue. When the queue is full
the oldest message is dropped and counted. paho reconnects with exponential back-off and resends
QoS 1/2 messages it had not had acknowledged. At the end the queue is drained for a few seconds;
what is left is counted as dropped too: every decision is either published or counted.
With QoS 0 "published" means written to the socket: a message written just before the connection
broke can be lost without the broker having it (use QoS 1 when that matters).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from ...errors import ConfigError, DaeError
from ...optional import require

#: the environment variables for what should not be typed on a command line
ENV_USERNAME, ENV_PASSWORD = "DAE_MQTT_USERNAME", "DAE_MQTT_PASSWORD"
ENV_CA, ENV_CERT, ENV_KEY = "DAE_MQTT_CA", "DAE_MQTT_CERT", "DAE_MQTT_KEY"


class MqttError(DaeError):
    """The broker cannot be reached at start (with ``--mqtt-on-fail exit``), or MQTT options are wrong."""


@dataclass
class MqttOptions:
    url: str
    qos: int = 1
    queue_size: int = 10000
    username: str | None = None
    password_file: Path | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    client_id: str | None = None
    keepalive_s: int = 30
    #: "retry": warn in one line and keep trying; "exit": stop with an error
    on_fail: str = "retry"
    connect_timeout_s: float = 5.0
    status_interval_s: float = 10.0
    drain_s: float = 5.0
    max_backoff_s: int = 30


@dataclass
class Broker:
    host: str
    port: int
    prefix: str
    tls: bool
    username: str | None


def parse_url(url: str) -> Broker:
    """``mqtt://host[:port]/prefix`` (TLS: ``mqtts://``, port 8883 by default)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ConfigError(f"--mqtt {url!r}: expected mqtt://HOST[:PORT]/TOPIC/PREFIX (or mqtts:// for TLS)")
    if parts.password:
        raise ConfigError(f"--mqtt: no password in the URL (the process list shows it): set {ENV_PASSWORD} or use --mqtt-password-file")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"--mqtt {url!r}: the port is not a number in 1..65535") from None
    prefix = unquote(parts.path).strip("/") or "dae"
    if any(c in prefix for c in "+#"):
        raise ConfigError(f"--mqtt {url!r}: the topic prefix may not contain the wildcards + or #")
    return Broker(parts.hostname, port, prefix, tls, unquote(parts.username) if parts.username else None)


def redacted(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl() if parts.hostname else url


def _probe(host: str, port: int, timeout: float) -> str | None:
    """Why a TCP connection to the broker fails (None when it opens): the reason paho does not give."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


class MqttPublisher:
    """Queue, sender thread and paho client for one broker."""

    def __init__(self, opts: MqttOptions, info: dict[str, Any], stats: Callable[[], dict[str, Any]] | None = None,
                 warn: Callable[[str], None] | None = None):
        mqtt = require("paho.mqtt.client")
        self.opts, self.info, self.stats_fn, self.warn = opts, info, stats, warn or (lambda m: None)
        if opts.qos not in (0, 1, 2):
            raise ConfigError(f"--mqtt-qos must be 0, 1 or 2 (got {opts.qos})")
        self.broker = parse_url(opts.url)
        self.status_topic = f"{self.broker.prefix}/status"
        self.published = self.dropped = self.disconnects = 0
        self.last_error: str | None = None
        self.connected = threading.Event()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._times: deque[float] = deque(maxlen=100)  # of the last decisions: the status' FPS
        self._cond = threading.Condition()
        self._closing = False
        self._acks = threading.Lock()  # never held while calling paho (its callbacks take this one)
        self._pending: dict[int, bool] = {}  # message id -> is an event (counted), not a status
        self._early: set[int] = set()  # acknowledged before publish() returned its id

        client_id = opts.client_id or f"dae-{socket.gethostname()}-{os.getpid()}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        username = opts.username or self.broker.username or os.environ.get(ENV_USERNAME)
        password = os.environ.get(ENV_PASSWORD)
        if opts.password_file is not None:
            try:
                password = Path(opts.password_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read --mqtt-password-file {opts.password_file}: {exc.strerror}") from None
        if username or password:
            self.client.username_pw_set(username, password)
        ca = opts.ca or os.environ.get(ENV_CA)
        cert, key = opts.cert or os.environ.get(ENV_CERT), opts.key or os.environ.get(ENV_KEY)
        if self.broker.tls or ca or cert:
            for what, path in (("CA", ca), ("certificate", cert), ("key", key)):
                if path and not Path(path).is_file():
                    raise ConfigError(f"MQTT TLS {what} file not found: {path}")
            self.client.tls_set(ca_certs=str(ca) if ca else None, certfile=str(cert) if cert else None, keyfile=str(key) if key else None)
        self.client.will_set(self.status_topic, self._status("offline", reason="connection lost"), qos=1, retain=True)
        self.client.reconnect_delay_set(1, opts.max_backoff_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._thread = threading.Thread(target=self._send_loop, name="mqtt", daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (waiting up to ``connect_timeout_s``) and start sending. An unreachable broker is
        one warning line and retries in the background, or :class:`MqttError` with ``on_fail="exit"``."""
        b = self.broker
        self.client.connect_async(b.host, b.port, keepalive=self.opts.keepalive_s)
        self.client.loop_start()
        self._thread.start()
        if self.connected.wait(self.opts.connect_timeout_s):
            return
        reason = self.last_error or _probe(b.host, b.port, 2.0) or "no answer to CONNECT"
        where = f"MQTT broker {b.host}:{b.port}"
        if self.opts.on_fail == "exit":
            self.close(drain_s=0)
            raise MqttError(f"cannot reach {where} ({reason}) within {self.opts.connect_timeout_s:g} s (--mqtt-on-fail exit)")
        self.warn(f"cannot reach {where} ({reason}); retrying with back-off up to {self.opts.max_backoff_s} s, "
                  f"up to {self.opts.queue_size} messages are kept meanwhile")

    def close(self, drain_s: float | None = None) -> None:
        """Send what is queued (up to ``drain_s``), count the rest as dropped, publish ``offline``, disconnect."""
        drain_s = self.opts.drain_s if drain_s is None else drain_s
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self.connected.is_set():
            if not self._queue and not self._unacked():
                break
            time.sleep(0.02)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._cond, self._acks:
            self.dropped += len(self._queue) + sum(self._pending.values())
            self._queue.clear()
            self._pending.clear()
        if self.connected.is_set():
            info = self._publish(self.status_topic, self._status("offline", reason="stopped"), 1, retain=True, event=False)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    # -- producer side (the run loop's output thread) -----------------------------------------

    def publish_event(self, event: dict[str, Any]) -> None:
        """Queue one decision; never blocks. A full queue drops its oldest message (counted)."""
        camera = str(event.get("camera") or "cam0")
        topic = f"{self.broker.prefix}/events/{camera}"
        payload = json.dumps(event).encode()
        with self._cond:
            self._times.append(time.monotonic())
            if self._closing:
                self.dropped += 1
                return
            if len(self._queue) >= self.opts.queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((topic, payload))
            self._cond.notify()

    def stats(self) -> dict[str, Any]:
        pending = self._unacked()
        return {"url": redacted(self.opts.url), "qos": self.opts.qos, "connected": self.connected.is_set(),
                "published": self.published, "queued": len(self._queue) + pending, "dropped": self.dropped,
                "disconnects": self.disconnects, "last_error": self.last_error}

    # -- sender thread and callbacks -----------------------------------------------------------

    def _status(self, state: str, **extra: Any) -> bytes:
        body = {"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(), "pid": os.getpid(),
                **self.info, **extra}
        if state == "online":
            t = list(self._times)
            body["fps"] = round((len(t) - 1) / (t[-1] - t[0]), 2) if len(t) > 1 and t[-1] > t[0] and time.monotonic() - t[-1] < 5 else 0.0
            if self.stats_fn is not None:
                body.update(self.stats_fn())
        return json.dumps(body).encode()

    def _send_loop(self) -> None:
        last_status = time.monotonic()
        while True:
            with self._cond:
                while not self._closing and not (self._queue and self.connected.is_set() and self._room()):
                    self._cond.wait(0.2)
                    if time.monotonic() - last_status >= self.opts.status_interval_s:
                        break
                if self._closing:
                    return
                item = self._queue.popleft() if self._queue and self.connected.is_set() and self._room() else None
            if time.monotonic() - last_status >= self.opts.status_interval_s:
                last_status = time.monotonic()
                if self.connected.is_set():
                    self._publish(self.status_topic, self._status("online"), 1, retain=True, event=False)
            if item is None:
                continue
            topic, payload = item
            info = self._publish(topic, payload, self.opts.qos)
            if info is None:
                with self._cond:  # not handed over: first in line again when the connection is back
                    self._queue.appendleft(item)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool = False, event: bool = True) -> Any:
        """Hand one message to paho and track its acknowledgement; None when paho did not take it
        (QoS 0 while disconnected; QoS 1/2 messages are kept by paho and resent on reconnection)."""
        mqtt = require("paho.mqtt.client")
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        with self._acks:
            if info.mid in self._early:
                self._early.discard(info.mid)
                self.published += event
            else:
                self._pending[info.mid] = event
        return info

    def _unacked(self) -> int:
        with self._acks:
            return sum(self._pending.values())

    def _room(self) -> bool:
        with self._acks:
            return len(self._pending) < 1000  # unacknowledged messages in paho's hands

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if getattr(reason_code, "is_failure", False):
            self.last_error = f"broker refused the connection: {reason_code}"
            return
        self.last_error = None
        self._publish(self.status_topic, self._status("online"), 1, retain=True, event=False)
        self.connected.set()
        with self._cond:
            self._cond.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if self.connected.is_set() and not self._closing:
            self.disconnects += 1
        self.connected.clear()
        if getattr(reason_code, "is_failure", False):
            self.last_error = f"disconnected: {reason_code}"

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any = None, properties: Any = None) -> None:
        with self._acks:
            if mid in self._pending:
                self.published += self._pending.pop(mid)
            else:
                self._early.add(mid)
