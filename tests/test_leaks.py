"""The suite-wide check (tests/conftest.py): a test that leaves a non-daemon thread, a child process
or a server behind fails, and the run still exits by itself (a leftover non-daemon thread used to
keep the interpreter alive for ever after the summary). Checked on an inner pytest run."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_leftovers_fail_their_test_and_the_run_still_exits(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "conftest.py").write_text("from tests.conftest import _leaves_nothing_running, pytest_sessionfinish, pytest_unconfigure  # noqa: F401\n")
    (inner / "test_inner.py").write_text(textwrap.dedent('''
        import socket
        import subprocess
        import sys
        import threading

        def test_clean():
            t = threading.Thread(target=lambda: None)
            t.start()
            t.join()

        def test_thread():
            threading.Thread(target=threading.Event().wait, name="forever").start()  # never ends

        def test_child():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])

        def test_server():
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen()
            test_server.keep = s  # never closed
    '''))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(inner)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "4 passed, 3 errors" in out, out  # the bodies pass; the check fails them at teardown
    assert "left running: non-daemon thread 'forever'" in out
    assert "left running: child process" in out and "time.sleep(600)" in out
    assert "left running: listening socket" in out
    assert "tests left non-daemon threads running ('forever')" in out  # and it exited instead of hanging
