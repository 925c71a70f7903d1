"""The examples every ``dae`` verb's ``--help`` ends with (plain text: no imports, cheap to load)."""

from __future__ import annotations

_EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "train": [
        ("dae train --data /data/mvtec --category bottle --preset edge --minutes 40 --out runs/bottle.pt", "MVTec category, 40 min"),
        ("dae train --preset tiny --steps 200 --out runs/demo.pt", "built-in synthetic data, a quick run"),
        ("dae train --data /data/mvtec --category all --preset edge --minutes 40 --nproc 4 --out runs", "every category in turn, 4 GPUs"),
    ],
    "eval": [
        ("dae eval runs/bottle.pt", "test split of the data it was trained on"),
        ("dae eval runs/bottle.pt --data /data/mvtec --category bottle --json bottle.json", "another copy, results as JSON"),
    ],
    "info": [
        ("dae info --preset edge", "parameters and GFLOP of a preset"),
        ("dae info runs/bottle.pt --json", "of a checkpoint, as JSON"),
    ],
    "export": [
        ("dae export runs/bottle.pt --target openvino-cpu --precision int8", "OpenVINO INT8 bundle"),
        ("dae export runs/bottle.pt --target onnxruntime-cpu --threshold-data /data/line --false-alarm-rate 0.01",
         "threshold from your own labelled images"),
        ("dae export exports/bottle-openvino-cpu-int8 --refit-threshold review/", "thresholds placed again with the reviewed good frames"),
    ],
    "targets": [
        ("dae targets", "table of target profiles"),
        ("dae targets --json", "for scripts"),
    ],
    "run": [
        ("dae run --model exports/bottle-openvino-cpu-int8 --camera 0", "live camera, window and status line"),
        ("dae run --model exports/bottle-openvino-cpu-int8 --source line.mp4 --save out.mp4 --events ev.jsonl", "video file"),
        ("dae run --model exports/bottle-openvino-cpu-int8 --sources cameras.toml --http :8080 --mqtt mqtt://broker.local/line4",
         "on the line: several cameras, live view on localhost:8080, events to MQTT"),
    ],
    "serve": [
        ("dae serve --model exports/bottle-openvino-cpu-int8", "POST /predict on localhost:8080 (curl --data-binary @part.png ...)"),
        ("dae serve --model exports/bottle-openvino-cpu-int8 --http 0.0.0.0:8080", "for the line controller (token from DAE_HTTP_TOKEN)"),
    ],
    "predict": [
        ("dae predict parts/ --model exports/bottle-openvino-cpu-int8", "table of scores and OK/NG"),
        ("dae predict 'parts/*.png' --model exports/bottle-openvino-cpu-int8 --out results/", "plus overlays and CSV/JSON"),
        ("dae predict part.png --model runs/bottle.pt --json", "one JSON line per image"),
    ],
    "bench": [
        ("dae bench exports/* --checkpoint runs/bottle.pt", "speed of every bundle against PyTorch FP32"),
        ("dae bench exports/* --checkpoint runs/bottle.pt --eval-data /data/mvtec --eval-category bottle", "speed and accuracy"),
        ("dae bench exports/bottle-openvino-cpu-int8 --iterations 100 --json", "one bundle, JSON on stdout"),
    ],
    "demo": [
        ("dae demo --fast", "the whole chain in a few minutes (a smoke test)"),
        ("dae demo --steps 200 --out demo_out", "a longer-trained model"),
    ],
    "data generate": [
        ("dae data generate data/", "the built-in 'surface' category"),
        ("dae data generate data/ --n-train 40 --size 128 --seed 1", "smaller and another seed"),
        ("dae data generate data/ --category long-part", "long parts (1:2.5) with 2-4 px scratches at full resolution"),
    ],
}


def epilog(verb: str) -> str:
    """The "Examples:" block of ``verb``'s help: one command per line, with what it does."""
    lines = [f"[bold]{cmd}[/bold]  [dim]# {what}[/dim]" for cmd, what in _EXAMPLES[verb]]
    return "Examples:\n\n" + "\n\n".join(lines)
