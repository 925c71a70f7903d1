"""Real parts for the on-the-line tests: a mosquitto broker on a free port, an MQTT subscriber
(paho), and headless chromium driven over its DevTools pipe."""

from __future__ import annotations

import base64
import getpass
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find(*names: str) -> str | None:
    for name in names:
        for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
            if candidate and os.access(candidate, os.X_OK):
                return candidate
    return None


class Broker:
    """mosquitto on 127.0.0.1:port, persistent sessions kept across a stop/start (as on a real site)."""

    def __init__(self, folder: Path):
        exe = _find("mosquitto")
        if exe is None:
            pytest.skip("mosquitto is not installed (.ci/run installs it with apt-get where it can: Debian and root)")
        self.exe, self.folder, self.port = exe, folder, free_port()
        (folder / "data").mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        # `user`: started as root, mosquitto otherwise switches to the `mosquitto` user, which cannot
        # write its persistence file into this (root-owned) folder: the subscriber's session would
        # not survive a restart and messages sent before it reconnects would be lost to it.
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {folder / 'data'}/\nuser {getpass.getuser()}\n")
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # a clean stop: mosquitto saves its persistent sessions
            self.proc.wait(timeout=10)
        self.proc = None


class Subscriber:
    """A real MQTT client that records every message (topic, payload, retain), resubscribing after a
    reconnection; a persistent session so that messages for it are kept while it is away."""

    def __init__(self, port: int, topic: str, client_id: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict, bool]] = []
        self.subscribed = threading.Event()
        self.lock = threading.Lock()
        persistent = client_id is not None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=not persistent)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(list(self.messages)):
                    return True
            time.sleep(0.05)
        return False

    def events(self) -> list[dict]:
        with self.lock:
            return [m for t, m, _ in self.messages if "/events/" in t]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Chromium:
    """Headless chromium driven over the DevTools protocol on a pipe (no extra package needed)."""

    def __init__(self, folder: Path):
        exe = _find("chromium", "chromium-browser", "google-chrome")
        if exe is None:
            pytest.skip("chromium is not installed (.ci/run installs it with apt-get where it can: Debian and root)")
        to_r, self._to_w = os.pipe()  # we write commands, chromium reads them on its fd 3
        self._from_r, from_w = os.pipe()  # chromium writes answers on its fd 4
        cmd = (f'exec "{exe}" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run '
               f'--user-data-dir="{folder}" --remote-debugging-pipe --window-size=1100,900 about:blank 3<&{to_r} 4>&{from_w}')
        self.proc = subprocess.Popen(["bash", "-c", cmd], pass_fds=(to_r, from_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self._buf = b""
        self._id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable", session=True)

    def call(self, method: str, params: dict | None = None, session: bool = False, timeout: float = 30.0) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            chunk = os.read(self._from_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self._buf += chunk
        raise TimeoutError(method)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url}, session=True)

    def js(self, expression: str):
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session=True)
        return res.get("result", {}).get("value")

    def wait_js(self, expression: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        return None

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001  (it may already be gone)
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_w)
        os.close(self._from_r)
