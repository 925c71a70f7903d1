"""Ctrl-C (and SIGTERM) during training: taken at a step boundary, so that the step in flight finishes
and the checkpoint written then resumes exactly (a step cut in half would already have moved the
BatchNorm statistics)."""

from __future__ import annotations

import signal
import threading

from .. import interrupts
from ..errors import DaeError


class TrainingInterrupted(DaeError):
    """Ctrl-C during training; the checkpoint has been saved."""

    exit_code = 130


class StopOnSigint:
    """While active (main thread only), the first Ctrl-C only sets ``requested``: the training
    loop stops at the next step boundary and saves. A second Ctrl-C stops at once (the last
    written checkpoint is kept). The CLI forwards SIGTERM here too (:func:`..interrupts.forward_sigterm`)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        interrupts.note_stop(signum)
        label = interrupts.signal_label(signum)
        print(f"\n{label}: finishing the current step and saving the checkpoint ({label} again to stop now)", flush=True)

    def __enter__(self) -> "StopOnSigint":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
