"""The package import graph: no cycle between packages, deployment never leans on export or training,
and the device side's three rooms keep apart.

Every module of ``diffusionad_edge`` is parsed with ``ast`` (imports inside functions count too:
a lazy import is still a dependency) and each import becomes an arrow between the top-level
sub-packages (``runtime``, ``export``, ``models``, ...; single modules such as ``config.py`` or
``errors.py`` are leaves of their own). Inside ``runtime`` the same walk, one level down, gives the
arrows between its rooms: ``runtime.backends`` (the runners and the table of backends),
``runtime.line`` (live view, MQTT, ``dae serve``, several cameras) and ``runtime`` itself (the frame
path: bundle, thresholds, sources, run loop, overlay, predict).

The command line is the top of the graph: no package imports ``cli``, and only ``cli`` imports the
command-line toolkits (typer, click, rich), so each verb's work is a library function a Python user
calls without them (each one is also called from Python by its own test).
"""

from __future__ import annotations

import ast
from pathlib import Path

import diffusionad_edge

PACKAGE = "diffusionad_edge"
ROOT = Path(diffusionad_edge.__file__).parent
#: arrows that must never exist: deployment does not need the exporter or the trainer (``runtime`` is
#: all of it here, its rooms included)
FORBIDDEN = {("runtime", "export"), ("runtime", "train"), ("runtime", "quantize"), ("runtime", "bench"),
             ("runtime", "evaluate"), ("runtime", "cli"), ("models", "train"), ("models", "runtime")}
#: runtime's sub-packages that are rooms of their own; the rest of runtime is the frame path, ``runtime``
ROOMS = ("runtime.backends", "runtime.line")
#: arrows between the rooms that must never exist: the backends are the bottom (they import neither the
#: line package nor the frame path), the frame path runs them and never reaches up into the line
#: package, and the line package runs models through the frame path's bundle, never a backend directly
ROOM_FORBIDDEN = {("runtime.backends", "runtime.line"): "the backends never import the line package",
                  ("runtime.backends", "runtime"): "the backends never import the frame path",
                  ("runtime", "runtime.line"): "the frame path never imports the line package",
                  ("runtime.line", "runtime.backends"): "the line package never imports a backend (it runs the bundle)"}


#: the command-line toolkits: imported by cli/ only
CLI_TOOLKITS = ("typer", "click", "rich")


def _unit(module: str) -> str | None:
    """``diffusionad_edge.runtime.bundle`` -> ``runtime``; the package root itself -> None."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    return parts[1]


def _room(module: str) -> str | None:
    """``diffusionad_edge.runtime.line.mqtt`` -> ``runtime.line``; ``diffusionad_edge.runtime.bundle`` ->
    ``runtime`` (the frame path); outside runtime: the top-level unit, as :func:`_unit`."""
    unit = _unit(module)
    parts = module.split(".")
    if unit == "runtime" and len(parts) > 2 and f"runtime.{parts[2]}" in ROOMS:
        return f"runtime.{parts[2]}"
    return unit


def _is_module(name: str) -> bool:
    """Whether ``name`` (``diffusionad_edge.runtime.line``) is a module or package of the tree under ``ROOT``."""
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> list[str]:
    """Absolute names of the package modules that ``path`` imports (relative imports resolved;
    ``from X import y`` counts as an import of ``X.y`` when ``y`` is a module)."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]  # the package a relative import starts from (for __init__.py: itself)
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module is None or mod == PACKAGE:  # from . import x / from .. import x: x may be a module
                out += [f"{mod}.{a.name}" for a in node.names]
            else:  # from ..runtime import line: the module runtime.line; from .bundle import Bundle: bundle
                out += [f"{mod}.{a.name}" if _is_module(f"{mod}.{a.name}") else mod for a in node.names]
    return [m for m in out if m.split(".")[0] == PACKAGE]


def package_edges(unit=_unit) -> dict[tuple[str, str], list[str]]:
    """(from unit, to unit) -> the modules that make the arrow; ``unit=_room``: runtime's rooms apart."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        src = unit(".".join(path.relative_to(ROOT.parent).with_suffix("").parts))
        if src is None or src == "__init__":
            continue
        for target in _imports(path):
            dst = unit(target)
            if dst is None or dst == src:
                continue
            edges.setdefault((src, dst), []).append(str(path.relative_to(ROOT.parent)))
    return edges


def find_cycle(edges) -> list[str] | None:
    """One cycle in the directed graph given by ``edges`` (pairs), or None."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def violations(edges) -> list[str]:
    problems = [f"forbidden import {a} -> {b} in {', '.join(sorted(set(edges[(a, b)])))}"
                for (a, b) in edges if (a, b) in FORBIDDEN]
    if (cycle := find_cycle(edges)) is not None:
        problems.append("import cycle between packages: " + " -> ".join(cycle))
    return problems


def room_violations(edges) -> list[str]:
    """The room rules broken by ``edges`` (arrows between rooms, :func:`package_edges` with :func:`_room`)."""
    return [f"forbidden import {a} -> {b} ({ROOM_FORBIDDEN[(a, b)]}) in {', '.join(sorted(set(edges[(a, b)])))}"
            for (a, b) in edges if (a, b) in ROOM_FORBIDDEN]


def test_the_walk_sees_real_imports():
    edges = package_edges()
    assert ("export", "runtime") in edges  # the exporter checks what it built with the runtime
    assert ("cli", "runtime") in edges
    rooms = package_edges(_room)
    assert ("runtime", "runtime.backends") in rooms  # the bundle runs the backends' runners
    assert ("runtime.line", "runtime") in rooms  # dae run / dae serve on the line run the bundle
    assert ("cli", "runtime.line") in rooms and ("export", "runtime.backends") in rooms
    assert all(_room(f"{PACKAGE}.{r}.x") == r for r in ROOMS) and _room(f"{PACKAGE}.runtime.live") == "runtime"


def test_no_cycle_and_no_forbidden_arrow():
    assert violations(package_edges()) == []


def test_negative_control_forbidden_edge_and_cycle_are_detected():
    edges = dict(package_edges())
    edges[("runtime", "export")] = ["synthetic.py"]
    problems = violations(edges)
    assert any("forbidden import runtime -> export" in p for p in problems)
    assert any("cycle" in p for p in problems)  # export -> runtime exists, so runtime -> export closes a cycle
    assert find_cycle({("a", "b"), ("b", "c")}) is None
    assert find_cycle({("a", "b"), ("b", "c"), ("c", "a")}) is not None


def test_runtime_rooms_keep_apart():
    assert room_violations(package_edges(_room)) == []


def test_negative_control_room_edges_are_detected():
    edges = dict(package_edges(_room))
    for arrow, rule in ROOM_FORBIDDEN.items():
        bad = {**edges, arrow: ["synthetic.py"]}
        assert room_violations(bad) == [f"forbidden import {arrow[0]} -> {arrow[1]} ({rule}) in synthetic.py"]
    # allowed arrows stay allowed
    assert room_violations({("runtime", "runtime.backends"): ["a.py"], ("runtime.line", "runtime"): ["b.py"]}) == []


def _fake_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A package tree under ``tmp_path`` with ``files`` (path under the package -> source) and an
    ``__init__.py`` in every folder."""
    root = tmp_path / PACKAGE
    for rel, text in files.items():
        path = root / rel
        for folder in [root, *reversed(path.relative_to(root).parents)]:
            (root / folder).mkdir(parents=True, exist_ok=True)
            init = root / folder / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(text)
    return root


#: one module per room rule that breaks it, each import written another way (relative, absolute,
#: ``from X import module``, lazy)
ROOM_BREAKERS = {
    ("runtime.backends", "runtime.line"): {"runtime/backends/bad.py": "from ..line.mqtt import MqttPublisher\n"},
    ("runtime.backends", "runtime"): {"runtime/backends/tensorrt/bad.py": "def f():\n    from ...bundle import Bundle\n",
                                      "runtime/bundle.py": ""},
    ("runtime", "runtime.line"): {"runtime/live.py": "from diffusionad_edge.runtime import line\n",
                                  "runtime/line/livestate.py": ""},
    ("runtime.line", "runtime.backends"): {"runtime/line/bad.py": "import diffusionad_edge.runtime.backends.table\n",
                                           "runtime/backends/table.py": ""},
}


def test_negative_control_room_rules_on_parsed_source(tmp_path, monkeypatch):
    """A module that breaks each room rule, in a temporary tree, is caught."""
    assert set(ROOM_BREAKERS) == set(ROOM_FORBIDDEN)  # a breaker for every rule
    for (a, b), files in ROOM_BREAKERS.items():
        monkeypatch.setitem(globals(), "ROOT", _fake_tree(tmp_path / f"{a}-{b}", files))
        problems = room_violations(package_edges(_room))
        assert len(problems) == 1 and problems[0].startswith(f"forbidden import {a} -> {b} "), (a, b, problems)


def test_negative_control_rooms_never_import_export_or_train(tmp_path, monkeypatch):
    """The device side is all of runtime: a lazy import of the trainer in the line package, or of the
    exporter in a backend, breaks the package rule."""
    monkeypatch.setitem(globals(), "ROOT", _fake_tree(tmp_path, {
        "runtime/line/bad.py": "def f():\n    from ...train.trainer import Trainer\n",
        "runtime/backends/tensorrt/bad.py": "def f():\n    from ....export import pipeline\n",
        "train/trainer.py": "", "export/pipeline.py": ""}))
    problems = violations(package_edges())
    assert any(p.startswith("forbidden import runtime -> train in diffusionad_edge/runtime/line/bad.py") for p in problems), problems
    assert any(p.startswith("forbidden import runtime -> export in diffusionad_edge/runtime/backends/tensorrt/bad.py")
               for p in problems), problems


def test_negative_control_on_parsed_source(tmp_path, monkeypatch):
    """A module with a lazy (in-function) import of the exporter inside runtime/ is caught."""
    fake_root = tmp_path / PACKAGE
    (fake_root / "runtime").mkdir(parents=True)
    (fake_root / "export").mkdir()
    for f in ("__init__.py", "runtime/__init__.py", "export/__init__.py"):
        (fake_root / f).write_text("")
    (fake_root / "runtime" / "bad.py").write_text("def f():\n    from ..export.pipeline import export_bundle\n")
    monkeypatch.setitem(globals(), "ROOT", fake_root)
    problems = violations(package_edges())
    assert any("runtime -> export" in p for p in problems)


def _toolkit_imports(path: Path) -> list[str]:
    """The command-line toolkits (:data:`CLI_TOOLKITS`) that ``path`` imports, lazily or not."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append(node.module)
    return [name for name in found if name.split(".")[0] in CLI_TOOLKITS]


def cli_violations() -> list[str]:
    """Library modules (everything outside cli/, the package root included) that import cli/ or a
    command-line toolkit."""
    problems = [f"forbidden import {a} -> cli in {', '.join(sorted(set(files)))}"
                for (a, b), files in package_edges().items() if b == "cli"]
    for path in sorted(ROOT.rglob("*.py")):
        if _unit(".".join(path.relative_to(ROOT.parent).with_suffix("").parts)) == "cli":
            continue
        problems += [f"{path.relative_to(ROOT.parent)} imports {name} (only cli/ may)" for name in _toolkit_imports(path)]
    return problems


def test_the_library_never_imports_the_command_line():
    assert cli_violations() == []


def test_negative_control_library_importing_the_command_line(tmp_path, monkeypatch):
    """A library module importing typer (lazily), rich, or a cli module is caught; cli/ itself may."""
    monkeypatch.setitem(globals(), "ROOT", _fake_tree(tmp_path, {
        "evaluate/bad.py": "def f():\n    import typer\n",
        "train/bad.py": "from rich.table import Table\n",
        "demo/bad.py": "def f():\n    from ..cli.common import console\n",
        "cli/common.py": "import typer\nfrom rich.console import Console\n",
        "cli/eval_cmd.py": "from ..evaluate import bad\n"}))
    assert sorted(cli_violations()) == [
        "diffusionad_edge/evaluate/bad.py imports typer (only cli/ may)",
        "diffusionad_edge/train/bad.py imports rich.table (only cli/ may)",
        "forbidden import demo -> cli in diffusionad_edge/demo/bad.py",
    ]


#: each verb -> the library function it calls (public at the package top)
VERB_CALLS = {"train": "train_model", "eval": "evaluate_checkpoint", "info": "describe_model", "export": "export_bundle",
              "run": "run_on_line", "serve": "serve_bundle", "predict": "predict_images", "bench": "run_bench",
              "demo": "run_demo"}


def _calls(path: Path) -> set[str]:
    """Names of the functions ``path`` calls (``f(...)`` and ``x.f(...)``)."""
    tree = ast.parse(path.read_text(), str(path))
    return {n.func.id if isinstance(n.func, ast.Name) else n.func.attr
            for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute))}


def test_each_verb_calls_its_public_library_function():
    for verb, function in VERB_CALLS.items():
        assert function in diffusionad_edge.__all__, function
        assert function in _calls(ROOT / "cli" / f"{verb}_cmd.py"), (verb, function)


def test_public_api_is_lazy_and_complete():
    """`import diffusionad_edge` loads no heavy package; every public name resolves to its definition."""
    import subprocess
    import sys

    code = ("import sys, diffusionad_edge as d; "
            "heavy = [m for m in ('torch', 'openvino', 'onnxruntime', 'onnx', 'cv2', 'nncf') if m in sys.modules]; "
            "print(' '.join(heavy)); "
            "from diffusionad_edge import open_bundle, load_model; "
            "print(open_bundle.__module__, load_model.__module__, all(callable(getattr(d, n)) for n in d.__all__ if n != '__version__'))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.splitlines()
    assert first.strip() == "", f"imported by `import diffusionad_edge`: {first}"
    assert second == "diffusionad_edge.runtime.bundle diffusionad_edge.models.checkpoint_io True"
    import diffusionad_edge

    try:
        diffusionad_edge.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_readme_python_examples_run(tiny_dataset, tmp_path):
    """README's Python API examples, at test size: train from Python, then predict and run a folder."""
    from diffusionad_edge import RunOptions, TrainConfig, Trainer, open_bundle, open_dataset, preset, run_stream

    data = open_dataset(tiny_dataset.path, None)
    cfg = TrainConfig.for_preset("tiny-s2d", steps=2, batch_size=4, checkpoint_every=0)
    assert cfg.timesteps == "deployed" and cfg.dice_weight == 0.3  # the preset's recipe, as dae train uses
    result = Trainer(preset("tiny-s2d"), cfg, data, tmp_path / "m.pt").fit()
    assert result.step == 2 and result.checkpoint.is_file()
    image = tiny_dataset.test_samples[0].image_path
    with open_bundle(result.checkpoint) as bundle:
        r = bundle.predict(str(image))
        assert r.anomaly_map.shape[-2:] == (64, 64) and 0.0 <= r.score <= 1.0
        summary = run_stream(bundle, str(image.parent), RunOptions(events=tmp_path / "events.jsonl"))
    assert summary.frames == len(list(image.parent.iterdir()))
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == summary.frames
