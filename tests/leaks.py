"""What a test may not leave behind: a non-daemon thread (it keeps the interpreter, and so the whole
test run, from ever exiting), a child process still running, or a listening socket (a server) in
this process. Used by the autouse fixture in ``tests/conftest.py``; Linux ``/proc`` for the last two
(elsewhere they are not checked)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

# Helpers Python starts once and keeps on purpose (multiprocessing's resource tracker, a forkserver).
_ALLOWED_CHILDREN = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def non_daemon_threads() -> set[threading.Thread]:
    # An idle ThreadPoolExecutor worker (a library's: onnxruntime, OpenVINO, NNCF tools) is non-daemon
    # but does not hold the interpreter: concurrent.futures wakes and joins its workers at exit.
    return {t for t in threading.enumerate() if t.is_alive() and not t.daemon and t is not threading.main_thread()
            and not t.name.startswith("ThreadPoolExecutor-")}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended (only not reaped yet)


def child_processes() -> set[int]:
    """Running child processes of this process (not zombies, not Python's own helpers)."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").glob("*"):
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return {p for p in pids if _running(p) and not any(a in _cmdline(p) for a in _ALLOWED_CHILDREN)}


def listening_sockets() -> set[int]:
    """Inodes of the TCP sockets this process holds open in the LISTEN state."""
    listening: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A":  # TCP_LISTEN
                listening.add(cols[9])
    mine: set[int] = set()
    for fd in Path("/proc/self/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in listening:
            mine.add(int(target[8:-1]))
    return mine


def snapshot() -> tuple[set, set, set]:
    return non_daemon_threads(), child_processes(), listening_sockets()


def left_behind(before: tuple[set, set, set], grace_s: float = 5.0) -> list[str]:
    """What is running now and was not in ``before``, after waiting up to ``grace_s`` for it to end
    (threads and processes that are closing). Child processes still running then are killed, so
    that one leaking test does not disturb the next ones; a thread cannot be, it is only named."""
    deadline = time.monotonic() + grace_s
    while True:
        threads, children, sockets = (now - then for now, then in zip(snapshot(), before))
        if not (threads or children or sockets) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    found = [f"non-daemon thread {t.name!r}" for t in threads]
    found += [f"child process {pid} ({_cmdline(pid)[:120]})" for pid in children]
    found += [f"listening socket (inode {inode}): a server was not closed" for inode in sockets]
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (OSError, ChildProcessError):
            pass
    return found
