"""Ctrl-C during a job that spends minutes in native code (an export: ONNX, OpenVINO, NNCF).

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be, which can be inside an
import (leaving a module lock held: the process then waits forever) or nowhere at all for minutes
while native code runs. :class:`InterruptGuard` replaces that for the duration of a job:

- SIGINT raises nothing; it sets a flag that the job checks between its stages (:func:`check`
  raises :class:`Interrupted`, the job cleans up on the way out, the CLI prints one line, exit 130);
- a watchdog thread learns of the signal at once through :func:`signal.set_wakeup_fd` (written by
  the C-level handler, so also while the main thread is in native code). If the job has not stopped
  within ``grace_s`` seconds, or at a second Ctrl-C, the watchdog runs the registered clean-ups,
  prints the same line and ends the process with ``os._exit(130)``;
- :func:`critical` sections (moving a finished bundle into place) are never cut: the watchdog waits
  for them.

Outside a guard (library use, other threads) every function here is a no-op.

SIGTERM (what systemd, Docker and Kubernetes send to stop a program) is handled like Ctrl-C by every
verb: :func:`forward_sigterm` (installed by the CLI) hands it to whatever handles SIGINT at that
moment (the trainer's step-boundary stop, ``dae run``'s frame-boundary stop, this guard, or Python's
``KeyboardInterrupt``), and remembers it, so that the process ends with exit code 143 (128 + 15)
instead of 130 (:func:`exit_code`).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from .errors import DaeError

EXIT_CODE = 130
#: the signals that stop a job cleanly
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_stop_signal: int | None = None


def note_stop(signum: int) -> None:
    """Remember which signal asked the process to stop (for :func:`exit_code` and messages)."""
    global _stop_signal
    if signum in STOP_SIGNALS:
        _stop_signal = signum


def stop_signal() -> int | None:
    """SIGINT or SIGTERM when one asked this process to stop, else None."""
    return _stop_signal


def exit_code() -> int:
    """The exit code of a stopped job: 128 + the signal, 130 for Ctrl-C (also when none was noted), 143 for SIGTERM."""
    return 128 + int(_stop_signal or signal.SIGINT)


def signal_label(signum: int | None = None) -> str:
    """``Ctrl-C`` or ``SIGTERM``, for the one-line messages (default: the signal noted last)."""
    signum = _stop_signal if signum is None else signum
    return "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"


def forward_sigterm() -> None:
    """From now on (main thread only) SIGTERM does what SIGINT would do at that moment, and is noted."""
    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigterm(signum: int, frame: object) -> None:
        note_stop(signum)
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signum, frame)  # default_int_handler raises KeyboardInterrupt
        else:  # SIG_DFL / SIG_IGN for SIGINT: stop as Python's Ctrl-C would
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)


class Interrupted(DaeError):
    """The user pressed Ctrl-C; the message says what was kept."""

    exit_code = EXIT_CODE


_active: "InterruptGuard | None" = None


class InterruptGuard:
    """See the module docstring. ``message``: the one line printed on interruption."""

    def __init__(self, message: str = "interrupted", grace_s: float = 2.0):
        self.message = message
        self.grace_s = grace_s
        self.interrupted = threading.Event()
        self._cleanups: list[Callable[[], None]] = []
        self._lock = threading.RLock()
        self._done = threading.Event()
        self._installed = False

    # -- installation -----------------------------------------------------------------------------
    def __enter__(self) -> "InterruptGuard":
        global _active
        if threading.current_thread() is not threading.main_thread():
            return self  # signals go to the main thread only: nothing to guard here
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        self._old_wakeup = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        self._thread = threading.Thread(target=self._watch, name="ctrl-c-watchdog", daemon=True)
        self._thread.start()
        self._installed = True
        _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        if not self._installed:
            return
        with self._lock:  # a watchdog that is cleaning up and exiting finishes first
            self._done.set()
        signal.signal(signal.SIGINT, self._old_handler)
        signal.set_wakeup_fd(self._old_wakeup)
        try:
            os.write(self._w, b"\0")  # wake the watchdog so that it sees _done and returns
        except OSError:
            pass
        self._thread.join(timeout=2)
        os.close(self._r)
        os.close(self._w)
        _active = None
        self._installed = False

    def _on_sigint(self, signum: int, frame: object) -> None:
        # Runs in the main thread between bytecodes: raise nothing (an exception here could land inside
        # an import). The watchdog has already seen the signal through the wakeup fd.
        note_stop(signum)
        self.interrupted.set()

    # -- the watchdog -----------------------------------------------------------------------------
    def _signals(self, timeout: float | None) -> int:
        """Ctrl-Cs received within ``timeout`` seconds (None: wait for anything); -1 when done."""
        ready, _, _ = select.select([self._r], [], [], timeout)
        if not ready:
            return 0
        try:
            data = os.read(self._r, 512)
        except OSError:
            return -1
        if self._done.is_set() or not data:
            return -1
        # The C-level handler writes the number of every signal with a Python handler: Ctrl-C, and
        # SIGTERM when forward_sigterm() made it one.
        if signal.SIGTERM in data and signal.SIGINT not in data:
            note_stop(signal.SIGTERM)
        return sum(data.count(bytes([s])) for s in STOP_SIGNALS)

    def _watch(self) -> None:
        while True:
            n = self._signals(None)
            if n < 0:
                return
            if n:
                break
        self.interrupted.set()
        if n == 1:  # the first Ctrl-C: give the job a moment to stop at a stage boundary
            m = self._signals(self.grace_s)
            if m < 0:
                return
        self._hard_exit()

    def _hard_exit(self) -> None:
        with self._lock:  # never in the middle of a critical section
            if self._done.is_set():
                return
            for cleanup in reversed(self._cleanups):
                try:
                    cleanup()
                except Exception:  # noqa: BLE001  (best effort: we are leaving)
                    pass
            try:
                sys.stdout.flush()
            except Exception:  # noqa: BLE001
                pass
            os.write(2, (self.message + "\n").encode())
            os._exit(exit_code())


@contextmanager
def interrupt_guard(message: str = "interrupted", grace_s: float = 2.0) -> Iterator[InterruptGuard]:
    """``with interrupt_guard("interrupted; nothing written"): job()`` (see :class:`InterruptGuard`)."""
    with InterruptGuard(message, grace_s) as guard:
        yield guard


def check() -> None:
    """Raise :class:`Interrupted` when Ctrl-C was pressed (call it between the stages of a job)."""
    guard = _active
    if guard is not None and guard.interrupted.is_set():
        raise Interrupted(guard.message)


def set_message(message: str) -> None:
    """Change the line printed on interruption (what would be kept changed)."""
    if _active is not None:
        _active.message = message


@contextmanager
def cleanup_on_interrupt(cleanup: Callable[[], None]) -> Iterator[None]:
    """Within the block, a hard stop by the watchdog runs ``cleanup`` first (e.g. remove a staging folder)."""
    guard = _active
    if guard is None:
        yield
        return
    guard._cleanups.append(cleanup)
    try:
        yield
    finally:
        guard._cleanups.remove(cleanup)


@contextmanager
def critical() -> Iterator[None]:
    """A block the watchdog never cuts (it waits for the end of it)."""
    guard = _active
    if guard is None:
        yield
        return
    with guard._lock:
        yield
