"""The dae command as a user runs it: real processes, exit codes and one-line errors."""

import json
import os
import subprocess
import sys


def dae(*args, env_extra=None, timeout=300):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "diffusionad_edge.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _one_line_error(res, *fragments):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [l for l in res.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


VERBS = ("train", "eval", "info", "export", "targets", "run", "serve", "predict", "bench", "demo", "data")


def test_help_lists_verbs():
    res = dae("--help")
    assert res.returncode == 0
    listed = {line.strip("│ ").split(" ")[0] for line in res.stdout.splitlines() if line.strip("│ ")}
    assert set(VERBS) <= listed, listed
    for verb in VERBS:  # and each one has its own help
        sub = dae(verb, "--help")
        assert sub.returncode == 0 and "Usage:" in sub.stdout and "Traceback" not in sub.stderr, (verb, sub.stderr)


def test_every_help_ends_with_examples_that_parse():
    """Each verb's --help ends with two or three examples, and each example is accepted by the verb's
    own parser (options that exist, values of the right type)."""
    import shlex

    import typer

    from diffusionad_edge.cli.examples import _EXAMPLES
    from diffusionad_edge.cli.main import app

    group = typer.main.get_command(app)
    for verb in (*VERBS[:-1], "data generate"):
        help_text = dae(*verb.split(), "--help", env_extra={"COLUMNS": "200"}).stdout
        tail = help_text[help_text.index("Examples:"):].strip().splitlines()[1:]
        listed = [l.strip() for l in tail if l.strip()]
        assert 2 <= len(listed) <= 3 and all(l.startswith(f"dae {verb}") for l in listed), (verb, listed)
        assert "<bool>" not in help_text  # on/off flags take no value: no placeholder
        usage = next(line for line in help_text.splitlines() if "Usage:" in line)
        assert "{" not in usage, usage  # required arguments plain, not in braces
        for cmd, _ in _EXAMPLES[verb]:
            args = shlex.split(cmd)[1:]
            command = group
            while hasattr(command, "commands"):  # a group: dae, dae data
                command = command.commands[args.pop(0)]
            command.make_context(verb, args)  # raises on an unknown option or a bad value


def test_targets_piped_print_full_names_and_json_parses():
    res = dae("targets", env_extra={"COLUMNS": "50"})
    assert res.returncode == 0, res.stderr
    profiles = json.loads(dae("targets", "--json").stdout)
    for p in profiles:
        (line,) = [l for l in res.stdout.splitlines() if f" {p['name']} " in l]
        assert p["description"] in line  # not wrapped, not cut: a pipe gets the whole table
    assert "…" not in res.stdout


def test_info_preset_json():
    res = dae("info", "--preset", "paper", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert 155e6 < info["total_params"] < 165e6
    assert 1150 < info["one_step_gflop_per_image"] < 1250


def test_info_checkpoint(tiny_checkpoint):
    res = dae("info", tiny_checkpoint, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["preset"] == "tiny"


def test_bad_inputs_give_one_line(tmp_path, tiny_checkpoint, tiny_dataset):
    _one_line_error(dae("train", "--data", tmp_path / "nowhere", "--preset", "tiny"), "dataset folder not found")
    _one_line_error(dae("train", "--data", tiny_dataset.path.parent, "--preset", "tiny"), "--category surface")
    _one_line_error(dae("train", "--data", tiny_dataset.path, "--preset", "huge"), "unknown preset")
    _one_line_error(dae("info", tmp_path / "missing.pt"), "checkpoint not found")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage" * 100)
    _one_line_error(dae("eval", corrupt, "--data", tiny_dataset.path), "not a readable checkpoint")
    _one_line_error(dae("eval", tiny_checkpoint, "--data", tiny_dataset.path, "--mode", "magic"), "--mode")
    assert not list(tmp_path.glob("*.json"))


def test_train_then_eval_cli(tmp_path, tiny_dataset):
    ckpt = tmp_path / "run" / "m.pt"
    res = dae("train", "--data", tiny_dataset.path, "--preset", "tiny", "--steps", "2", "--batch-size", "4", "--out", ckpt)
    assert res.returncode == 0, res.stderr
    assert ckpt.is_file() and not list(ckpt.parent.glob("*.tmp"))
    out = tmp_path / "eval.json"
    res = dae("eval", ckpt, "--json", out)  # dataset taken from the checkpoint
    assert res.returncode == 0, res.stderr
    result = json.loads(out.read_text())
    assert set(result["overall"]) == {"image_auroc", "pixel_auroc", "pixel_ap", "aupro"}
    assert set(result["per_type"]) == {"hole", "scratch", "spot"}
    assert all(0.0 <= v <= 1.0 for v in result["overall"].values())
    res = dae("eval", ckpt, "--json", "-", "--limit", "4")  # JSON only, on stdout
    assert res.returncode == 0, res.stderr
    assert set(json.loads(res.stdout)["overall"]) == set(result["overall"])


def test_demo_fast_report_references_existing_files(tmp_path):
    import re

    res = dae("demo", "--fast", "--out", tmp_path / "demo", timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    report = tmp_path / "demo" / "report.md"
    assert res.stdout.strip().splitlines()[-1] == str(report)
    text = report.read_text()
    links = re.findall(r"\]\(([^)]+)\)", text) + re.findall(r"`((?:exports|ng_frames|bench)/[^`]+)`", text)
    assert any(l.endswith(".png") for l in links) and len(links) >= 5
    for link in links:
        assert (report.parent / link).exists(), link
    for name in ("run_overlay.mp4", "events.jsonl", "bench/bench.json", "eval.json"):
        assert (report.parent / name).is_file()
    # a fixed step count, not a time budget: the same model on a loaded machine as on an idle one
    import torch

    ckpt = torch.load(report.parent / "tiny.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 60 and ckpt["train_config"]["steps"] == 60
    assert "trained 60 steps (a fixed count)" in text
    held_out = ckpt["validation"].get("synthetic_image_auroc")
    # the opening note weighs the held-out check against the test metrics in the table beneath it
    from diffusionad_edge.demo.report import training_note

    test_auroc = json.loads((report.parent / "eval.json").read_text())["overall"]["image_auroc"]
    note = training_note(held_out, test_auroc, 60)
    assert (note is None) == (held_out is None or held_out >= 0.9)
    assert note is None or text.splitlines()[2] == f"> {note}"
    assert ("Under-trained model" in text) == (note is not None and note.startswith("**Under-trained"))


def test_run_status_line_rewrites_one_line_in_place(monkeypatch):
    import io

    from rich.console import Console

    from diffusionad_edge.cli import run_cmd

    buf = io.StringIO()
    monkeypatch.setattr(run_cmd, "console", Console(file=buf, force_terminal=True, width=60))
    status = run_cmd._StatusLine()
    for i, d in enumerate(["OK", "NG", "OK"]):
        status.last_draw = 0.0  # draw every frame here
        status.update({"decision": d, "score": 0.1 * (i + 1)})
    status.close()
    text = buf.getvalue()
    assert "\n" not in text and text.count("\r") >= 4
    assert "3 frames" in text and "OK 2  NG 1" in text and "last: OK 0.300" in text
    assert all(len(part) < 60 for part in text.split("\r"))
