"""Ctrl-C during an export: one line, exit code 130 within seconds, nothing half-written, the previous
bundle kept; a killed export's hidden staging folder is removed by the next export to the same place."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from diffusionad_edge.export.pipeline import ExportOptions, export_bundle, remove_stale_staging
from diffusionad_edge.runtime.bundle import load_bundle


def _start(ckpt, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "diffusionad_edge.cli.main", "export", str(ckpt), "--target", "openvino-cpu",
                             "--precision", "int8", "--input-size", "64", "--calibration-count", "8", "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _interrupt(proc, out, delay, signals=1, sig=signal.SIGINT):
    """Wait until the export has started writing (its staging folder exists), then Ctrl-C (or ``sig``)."""
    deadline = time.time() + 180
    while not list(out.parent.glob(f".{out.name}.partial-{proc.pid}-*")):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else "no staging folder"
        time.sleep(0.02)
    time.sleep(delay)
    for _ in range(signals):
        proc.send_signal(sig)
        time.sleep(0.1)
    t0 = time.perf_counter()
    _, err = proc.communicate(timeout=30)  # never hangs
    return err, time.perf_counter() - t0


def _assert_one_line(proc, err, expected, code=130):
    assert proc.returncode == code, err
    assert "Traceback" not in err and "Exception ignored" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == expected


@pytest.mark.parametrize("delay", [0.0, 0.7, 2.5])
def test_ctrl_c_during_export_ends_with_one_line(tiny_checkpoint, tmp_path, delay):
    out = tmp_path / "bundle"
    proc = _start(tiny_checkpoint, out)
    err, seconds = _interrupt(proc, out, delay)
    _assert_one_line(proc, err, f"interrupted; nothing written: {out}")
    assert seconds < 15
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no bundle, no hidden partial folder


def test_sigterm_during_export_ends_like_ctrl_c(tiny_checkpoint, tmp_path):
    """SIGTERM (systemd, Docker) stops an export as Ctrl-C does: one line, nothing written, exit code 143."""
    out = tmp_path / "bundle"
    proc = _start(tiny_checkpoint, out)
    err, _ = _interrupt(proc, out, 0.7, sig=signal.SIGTERM)
    _assert_one_line(proc, err, f"interrupted; nothing written: {out}", code=143)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_second_ctrl_c_and_previous_bundle_kept(tiny_checkpoint, tmp_path):
    out = tmp_path / "bundle"
    export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target="onnxruntime-cpu", out_dir=out, precision="fp32", input_size=64),
                  log=lambda m: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = _start(tiny_checkpoint, out, "--overwrite")
    err, seconds = _interrupt(proc, out, 0.3, signals=2)
    _assert_one_line(proc, err, f"interrupted; previous bundle kept: {out}")
    assert seconds < 10
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
    with load_bundle(out) as art:
        assert art.metadata["backend"] == "onnxruntime"


def test_stale_staging_folders_are_removed_by_the_next_export(tiny_checkpoint, tmp_path):
    out = tmp_path / "bundle"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = [tmp_path / f".bundle.partial-{int(dead.stdout)}-x1y2", tmp_path / ".bundle.partial-ab12_cd"]  # dead pid; older version
    live = tmp_path / f".bundle.partial-{__import__('os').getpid()}-busy"  # a concurrent export (alive): kept
    other = tmp_path / ".other.partial-1-zz"  # another bundle's: not ours to touch
    for p in stale + [live, other]:
        (p / "sub").mkdir(parents=True)
        (p / "sub" / "model.bin").write_bytes(b"half")
    logs = []
    res = export_bundle(ExportOptions(checkpoint=tiny_checkpoint, target="onnxruntime-cpu", out_dir=out, precision="fp32", input_size=64),
                        log=logs.append)
    assert res.passed and out.is_dir()
    assert not any(p.exists() for p in stale) and live.is_dir() and other.is_dir()
    assert any("removed 2 stale staging folder(s)" in m for m in logs)
    assert remove_stale_staging(out, log=lambda m: None) == []
    shutil.rmtree(live)
    assert json.loads((out / "metadata.json").read_text())["integrity"]["sha256"]
