"""TensorRT path: everything before the engine build runs here; the build/run test needs a GPU."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffusionad_edge.errors import MissingDependencyError
from diffusionad_edge.export.pipeline import ExportOptions, export_bundle
from diffusionad_edge.runtime.backends.tensorrt.engine import EngineMismatchError, build_engine, engine_filename, find_engine
from diffusionad_edge.runtime.bundle import load_bundle

from .stubfix import fixed_stub_copy

ROOT = Path(__file__).resolve().parents[2]
TRT_MODULES = [ROOT / "diffusionad_edge/runtime/backends/tensorrt/engine.py", ROOT / "diffusionad_edge/runtime/backends/tensorrt/runner.py",
               ROOT / "diffusionad_edge/runtime/backends/tensorrt/cuda_memory.py"]


def _real_tensorrt() -> bool:
    try:
        import tensorrt

        return hasattr(tensorrt, "Builder")
    except ImportError:
        return False


def _stub_site() -> Path | None:
    for entry in sys.path:
        if (Path(entry) / "tensorrt" / "__init__.pyi").is_file():
            return Path(entry)
    return None


@pytest.fixture(scope="module")
def trt_bundles(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("trt")
    out = {}
    for target, precision in (("jetson-orin", "fp16"), ("jetson-orin-dla", "int8"), ("jetson-orin-nano", "int8")):
        out[(target, precision)] = export_bundle(ExportOptions(
            checkpoint=tiny_checkpoint, target=target, precision=precision, out_dir=root / f"{target}-{precision}",
            input_size=64, calibration_count=8), log=lambda m: None)
    return out


def test_build_plan_and_trtexec_follow_the_profile(trt_bundles):
    fp16 = trt_bundles[("jetson-orin", "fp16")].metadata["tensorrt"]
    assert fp16["builder_flags"] == ["FP16"] and not fp16["explicit_quantization"]
    assert fp16["dla_core"] is None and "--useDLACore" not in fp16["trtexec"]
    assert "--fp16" in fp16["trtexec"] and "--memPoolSize=workspace:4096M" in fp16["trtexec"]
    dla = trt_bundles[("jetson-orin-dla", "int8")].metadata["tensorrt"]
    assert dla["dla_core"] == 0 and "--useDLACore=0 --allowGPUFallback" in dla["trtexec"] and "--int8" in dla["trtexec"]
    nano = trt_bundles[("jetson-orin-nano", "int8")].metadata["tensorrt"]
    assert nano["workspace_mib"] == 1024 and "--useDLACore" not in nano["trtexec"] and nano["explicit_quantization"]
    for b in trt_bundles.values():  # the ONNX the device builds from was checked here in onnxruntime
        assert b.metadata["checks"]["passed"] and "onnxruntime" in b.metadata["checks"]["artifact_runs_as"]
        assert b.metadata["checks"]["tensorrt_onnx_lint"]["problems"] == []  # and against TensorRT's parser rules


def test_trtexec_strongly_typed_line_for_tensorrt_11(trt_bundles):
    for b in trt_bundles.values():
        plan = b.metadata["tensorrt"]
        line = plan["trtexec_strongly_typed"]
        assert "--stronglyTyped" in line and "--fp16" not in line and "--int8" not in line
        assert line.split("--stronglyTyped")[0] in plan["trtexec"]  # same ONNX, pool, level, cache


def test_fp16_bundle_carries_an_fp16_onnx_checked_in_onnxruntime(trt_bundles):
    import onnx

    result = trt_bundles[("jetson-orin", "fp16")]
    model = onnx.load(str(result.bundle / result.metadata["entry"]))
    fp16 = onnx.TensorProto.FLOAT16
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    inits = {i.name: i.data_type for i in model.graph.initializer}
    assert conv_weights and all(inits[w] == fp16 for w in conv_weights)
    # The I/O contract is unchanged: FP32 in and out, cast at the edges.
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [*model.graph.input, *model.graph.output])
    err = result.metadata["checks"]["artifact_vs_pytorch"]
    # Really reduced precision (FP32 would be ~1e-6 from PyTorch), and still close.
    assert 1e-5 < err["map_max_abs_error"] < 0.05, err
    assert err["score_max_abs_error"] < 0.01 and result.metadata["checks"]["runtime_precision"] == "fp16"
    assert "FP16 tensors" in result.metadata["checks"]["artifact_runs_as"]


def test_engine_fingerprint_refuses_mismatch(tmp_path):
    name = engine_filename("10.3.0", "Orin (nvgpu)")
    assert name == "model.trt10.3.0.orin-nvgpu.engine"
    with pytest.raises(EngineMismatchError, match="--build-engine"):
        find_engine(tmp_path, "10.3.0", "Orin (nvgpu)")
    (tmp_path / name).write_bytes(b"engine")
    (tmp_path / "engine.json").write_text(json.dumps({"tensorrt": "10.3.0", "gpu": "Orin (nvgpu)"}))
    assert find_engine(tmp_path, "10.3.0", "Orin (nvgpu)") == tmp_path / name
    with pytest.raises(EngineMismatchError, match=r"built for TensorRT 10.3.0 on Orin \(nvgpu\).*TensorRT 10.7.0 on Orin.*rebuild"):
        find_engine(tmp_path, "10.7.0", "Orin (nvgpu)")
    with pytest.raises(EngineMismatchError, match="RTX 4090"):
        find_engine(tmp_path, "10.3.0", "NVIDIA GeForce RTX 4090")


@pytest.mark.skipif(_real_tensorrt(), reason="checks the behaviour without TensorRT")
def test_without_tensorrt_one_clear_line(trt_bundles):
    bundle = trt_bundles[("jetson-orin", "fp16")].bundle
    with pytest.raises(MissingDependencyError, match="JetPack"):
        load_bundle(bundle)
    with pytest.raises(MissingDependencyError, match="JetPack"):
        build_engine(bundle, trt_bundles[("jetson-orin", "fp16")].metadata["tensorrt"], gpu_name="none")
    res = subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", "export", str(bundle), "--build-engine"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error:") and "JetPack" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def _mypy(files, tmp_path, stubs):
    ini = tmp_path / "mypy.ini"
    ini.write_text("[mypy]\nfollow_imports = silent\n"
                   "[mypy-pycuda.*]\nignore_missing_imports = True\n[mypy-cuda.*]\nignore_missing_imports = True\n"
                   "[mypy-tensorrt_libs.*]\nignore_missing_imports = True\n"
                   "[mypy-tensorrt.*]\nignore_errors = True\n[mypy-tensorrt_bindings.*]\nignore_errors = True\n")
    env = {**os.environ, "MYPYPATH": str(stubs)}
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ini), "--cache-dir", str(tmp_path / "cache"), *map(str, files)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None or _stub_site() is None, reason="needs mypy and tensorrt-stubs ([dev] extra)")
def test_tensorrt_code_type_checks_against_trt10_stubs(tmp_path):
    stubs = fixed_stub_copy(_stub_site(), tmp_path / "stubs")
    res = _mypy(TRT_MODULES, tmp_path, stubs)
    assert res.returncode == 0, res.stdout[-3000:]
    # Negative control: a misspelt TensorRT API must fail the same check.
    bad = tmp_path / "bad_trt.py"
    bad.write_text("import tensorrt as trt\n\ndef f(config: trt.IBuilderConfig) -> None:\n"
                   "    config.set_memory_pool_limt(trt.MemoryPoolType.WORKSPACE, 1)\n")
    res = _mypy([bad], tmp_path, stubs)
    assert res.returncode != 0 and "set_memory_pool_limt" in res.stdout


@pytest.mark.parametrize("key", [("jetson-orin", "fp16"), ("jetson-orin-nano", "int8")])
@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not _real_tensorrt(), reason="needs TensorRT and a CUDA GPU (run on the device)")
def test_engine_build_and_run_matches_onnxruntime(trt_bundles, tiny_dataset, key):
    """FP16 (with CUDA-graph replay where cuda-python is used) and Q/DQ INT8 engines track the
    same ONNX run in onnxruntime; the engine is fingerprinted and reused, not rebuilt."""
    result = trt_bundles[key]
    engine = build_engine(result.bundle, result.metadata["tensorrt"], log=lambda m: None)
    fingerprint = json.loads((result.bundle / "engine.json").read_text())
    assert fingerprint["engine"] == engine.name and engine.stat().st_size > 0
    assert (result.bundle / result.metadata["tensorrt"]["timing_cache"]).stat().st_size > 0
    built_at = engine.stat().st_mtime_ns
    paths = [s.image_path for s in tiny_dataset.test_samples]
    with load_bundle(result.bundle) as trt_art, load_bundle(result.bundle, backend="onnxruntime") as ort_art:
        batch = np.stack([ort_art.preprocess(p) for p in paths])
        a, b = trt_art.runner.infer(batch), ort_art.runner.infer(batch)
        again = trt_art.runner.infer(batch)  # a replay (CUDA graph where captured) gives the same answer
    tolerance = 0.01 if key[1] == "fp16" else 0.05
    assert np.abs(a.score - b.score).max() < tolerance, (key, np.abs(a.score - b.score).max())
    assert np.abs(a.anomaly_map - b.anomaly_map).max() < 10 * tolerance
    assert np.array_equal(a.score, again.score)
    assert engine.stat().st_mtime_ns == built_at  # loading found the engine: no rebuild


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not _real_tensorrt(), reason="needs TensorRT and a CUDA GPU (run on the device)")
def test_first_run_builds_the_engine_and_a_foreign_one_is_refused(trt_bundles, tmp_path):
    import shutil

    source = trt_bundles[("jetson-orin", "fp16")].bundle
    bundle = tmp_path / "bundle"
    shutil.copytree(source, bundle, ignore=shutil.ignore_patterns("*.engine", "engine.json"))
    with load_bundle(bundle) as art:  # no engine yet: built on first use
        assert art.runner.infer(np.zeros((1, 3, 64, 64), np.float32)).score.shape == (1,)
    assert list(bundle.glob("*.engine")) and (bundle / "engine.json").is_file()
    fp = json.loads((bundle / "engine.json").read_text())
    (bundle / "engine.json").write_text(json.dumps({**fp, "tensorrt": "0.0.0"}))
    for engine in bundle.glob("*.engine"):
        engine.rename(bundle / "model.trt0.0.0.other-gpu.engine")
    with pytest.raises(EngineMismatchError, match="rebuild"):
        load_bundle(bundle)
