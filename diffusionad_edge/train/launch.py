"""``dae train --nproc N``: start N training processes on this machine, as torchrun would.

The same job as ``torchrun --standalone --nproc-per-node N -m diffusionad_edge.cli.main train ...`` (PyTorch's
elastic launcher, run in this process), but the outcome is one line: which process failed and how,
instead of the launcher's report. Several machines: use torchrun itself (README, "Training at
scale"); the training processes are the same.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid

from ..errors import DaeError

#: Seconds the processes get to finish their step and save after Ctrl-C before they are killed.
SHUTDOWN_GRACE_S = 120


#: Exit codes of a training process that printed its own reason: 1 (a lost peer, failed categories,
#: or a Python traceback), 2 (a user error), 130 (Ctrl-C: where it saved).
SELF_REPORTED = (1, 2, 130)


class LaunchFailed(DaeError):
    """A training process died (a signal, a crash): the others were stopped."""

    exit_code = 1


def launch(nproc: int, args: list[str], checkpoint_hint: str = "") -> None:
    """Run ``python -m diffusionad_edge.cli.main train *args`` (``dae train``) in ``nproc`` processes
    and wait for them.

    Returns when all succeeded. When the first process to fail printed its own reason
    (:data:`SELF_REPORTED`), this one ends with the same code and no second message; a process
    that died (a signal: killed, out of memory, a segfault) raises :class:`LaunchFailed` naming it.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # The elastic agent logs every state change; the outcome is reported here, once.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    if "OMP_NUM_THREADS" not in os.environ:
        # CPU processes share the cores instead of each taking all of them.
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
        shutdown_timeout=SHUTDOWN_GRACE_S,
    )
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "diffusionad_edge.cli.main", "train", *args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()  # the root cause, not the processes stopped after it
        code = failure.exitcode
        if code in SELF_REPORTED:  # the process said why itself (one line, or a bug's traceback)
            raise SystemExit(code) from None
        how = f"was killed by {failure.signal_name()}" if code < 0 else f"exited with code {code}"
        hint = f"; the last checkpoint written is kept: {checkpoint_hint}" if checkpoint_hint else ""
        raise LaunchFailed(
            f"training process rank {rank} of {nproc} (pid {failure.pid}) {how}, so the job was stopped{hint}"
        ) from None
    except SignalException as exc:
        # Ctrl-C (or a kill) of this launcher: the processes were asked to save and stop.
        raise SystemExit(130 if exc.sigval == signal.SIGINT else 1) from None
