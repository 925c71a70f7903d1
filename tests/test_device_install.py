"""A device install as a user makes it: the wheel with one backend extra in a fresh venv (no PyTorch),
running bundles exported by the workstation install. Also: the CLI module imports no heavy package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffusionad_edge.runtime.bundle import load_bundle

# The tiny exported bundles (ONNX Runtime and OpenVINO, FP32) and the 12-frame video of the live tests.
from tests.runtime.test_live import bundles, video  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
VERBS = ("train", "eval", "info", "export", "targets", "run", "serve", "predict", "bench", "demo", "data")
# What pip prints when it cannot reach an index (then the test skips: nothing about the package is known).
NETWORK_FAILURES = ("NewConnectionError", "Network is unreachable", "Temporary failure in name resolution",
                    "Max retries exceeded", "ConnectTimeout", "ReadTimeout", "No matching distribution found",
                    "Could not find a version that satisfies")


def test_cli_module_imports_no_heavy_package():
    # `dae --help` answers fast on any install: the command modules import their heavy packages inside
    # the command functions.
    code = ("import sys, diffusionad_edge.cli.main; "
            "print(' '.join(m for m in ('torch', 'openvino', 'onnxruntime', 'onnx', 'scipy', 'sklearn', 'nncf') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"imported by diffusionad_edge.cli.main: {res.stdout.strip()}"


def _clean_env() -> dict[str, str]:
    """The environment without anything that would let the device venv see the workstation's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(Path(sys.prefix))))
    return env


def _pip(args: list[str], python: str, what: str, timeout: int = 900) -> None:
    res = subprocess.run([python, "-m", "pip", *args], capture_output=True, text=True, timeout=timeout, env=_clean_env())
    if res.returncode != 0:
        text = res.stdout + res.stderr
        if any(marker in text for marker in NETWORK_FAILURES):
            pytest.skip(f"{what}: pip cannot reach a package index ({text.strip().splitlines()[-1]})")
        pytest.fail(f"{what} failed:\n{text[-3000:]}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _pip(["wheel", str(REPO), "--no-deps", "-q", "-w", str(out)], sys.executable, "building the wheel")
    (whl,) = out.glob("diffusionad_edge-*.whl")
    return whl


@pytest.fixture(scope="module")
def device_venvs(tmp_path_factory):
    """extra -> a fresh venv holding the wheel with that extra only (built once per extra)."""
    root, made = tmp_path_factory.mktemp("device"), {}

    def make(wheel: Path, extra: str) -> Path:
        if extra not in made:
            venv = root / extra
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=_clean_env())
            _pip(["install", "-q", f"{wheel}[{extra}]"], str(venv / "bin" / "python"), f"installing the wheel with [{extra}]")
            made[extra] = venv
        return made[extra]

    return make


def _in(*args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_clean_env())


@pytest.mark.slow
@pytest.mark.parametrize("extra, target, other", [("openvino", "openvino-cpu", "onnxruntime-cpu"),
                                                   ("onnxruntime", "onnxruntime-cpu", "openvino-cpu")])
def test_device_install_runs_bundles_without_torch(wheel, device_venvs, bundles, video, tmp_path, extra, target, other):  # noqa: F811
    venv = device_venvs(wheel, extra)
    py, dae = venv / "bin" / "python", venv / "bin" / "dae"

    # No PyTorch (nor the rest of the workstation side) in the device venv.
    res = _in(py, "-c", "import torch", cwd=tmp_path)
    assert res.returncode != 0 and "No module named 'torch'" in res.stderr, res.stderr
    res = _in(py, "-c", "import importlib.util as u; print([m for m in ('scipy', 'sklearn', 'onnx', 'nncf') if u.find_spec(m)])",
              cwd=tmp_path)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr
    # The package is the installed wheel, not this checkout.
    res = _in(py, "-c", "import diffusionad_edge; print(diffusionad_edge.__file__)", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip().startswith(str(venv)), res.stdout + res.stderr
    # The public API's runtime names work without PyTorch: a bundle scores an image from Python.
    code = (f"from diffusionad_edge import open_bundle\n"
            f"with open_bundle({str(bundles[target])!r}) as b: print(round(b.predict(__import__('numpy').zeros((64, 64, 3), 'uint8')).score, 6))")
    res = _in(py, "-c", code, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with load_bundle(bundles[target]) as bundle:
        import numpy

        assert float(res.stdout) == pytest.approx(bundle.predict(numpy.zeros((64, 64, 3), "uint8")).score, abs=1e-5)

    # Every verb is listed; the target profiles came with the wheel.
    res = _in(dae, "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    listed = {line.strip("│ ").split(" ")[0] for line in res.stdout.splitlines() if line.strip("│ ")}
    assert set(VERBS) <= listed, listed
    res = _in(dae, "targets", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert {"openvino-cpu", "onnxruntime-cpu", "jetson-orin"} <= {t["name"] for t in json.loads(res.stdout)}

    # A workstation verb: one line naming the extra, exit code 2, no traceback.
    for verb_args in (["train"], ["eval", "x.pt"], ["export", "x.pt", "--target", target]):
        res = _in(dae, *verb_args, cwd=tmp_path)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.strip().splitlines() == [
            f"error: dae {verb_args[0]} needs the training extra (torch is not installed): pip install 'diffusionad_edge[train]'"]

    # dae predict on the bundle: the workstation's scores.
    images = tmp_path / "images"
    images.mkdir()
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(images / f"part{i}.png"), rng.integers(0, 255, (72, 80, 3), dtype=np.uint8))
    res = _in(dae, "predict", images, "--model", bundles[target], "--out", tmp_path / "pred", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 3 and (tmp_path / "pred" / "results.csv").is_file()
    with load_bundle(bundles[target]) as bundle:
        for row in rows:
            path = Path(row["path"])
            assert row["score"] == pytest.approx(bundle.predict(path).score, abs=1e-5)

    # dae run on a video: every frame, events written.
    events = tmp_path / "events.jsonl"
    res = _in(dae, "run", "--model", bundles[target], "--source", video, "--events", events, "--no-show", "--json",
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(events.read_text().splitlines()) == 12
    assert json.loads(res.stdout)["frames"] == 12

    # dae bench on the bundle (latency rows: no accuracy, no PyTorch reference).
    res = _in(dae, "bench", bundles[target], "--iterations", "3", "--out", tmp_path / "bench", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (row,) = json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"]
    assert row["fps"] > 0

    # The other backend is not installed: one line naming its extra.
    res = _in(dae, "predict", images, "--model", bundles[other], cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    other_extra = "onnxruntime" if extra == "openvino" else "openvino"
    assert f"pip install 'diffusionad_edge[{other_extra}]'" in res.stderr
