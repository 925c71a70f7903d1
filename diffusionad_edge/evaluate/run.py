"""``dae eval`` as one call: a checkpoint on a test split.

:func:`evaluate_checkpoint` checks the results file, loads the model (with the asked map smoothing),
opens the dataset (by default the one the checkpoint was trained on), runs the evaluator and returns
the metrics with what was evaluated; :func:`study_noise` does the noise study instead (the fixed
noise against fresh noise per image). The CLI parses the options, calls one of them and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..config import MODES
from ..data.builtin import open_dataset
from ..errors import ConfigError
from ..files import write_json
from ..paths import OVERWRITE_HINT, check_apart, check_output_file
from ..progress import Bars, no_bar

Log = Callable[[str], None]


def check_mode(mode: str) -> None:
    """``mode`` must be one of :data:`~diffusionad_edge.config.MODES`."""
    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)} (got {mode!r})")


def _check_results_file(path: Path, checkpoint: str | Path, data: str | Path | None, overwrite: bool) -> None:
    # before the evaluation, not after it
    check_apart(path, "results file (--json)", [("the checkpoint", checkpoint), ("the data", data)])
    check_output_file(path, "results file (--json)", overwrite=overwrite, hint=OVERWRITE_HINT)


def _open(checkpoint: str | Path, data: str | Path | None, category: str | None, map_sigma: float | None, log: Log):
    """The model (with ``map_sigma`` when given), the checkpoint's contents and the dataset: ``data``,
    or without ``data`` and ``category`` the dataset the checkpoint was trained on."""
    from ..models.checkpoint_io import load_model

    model, payload = load_model(checkpoint)
    if map_sigma is not None:
        model.set_map_sigma(map_sigma)
    if data is None and category is None:
        trained_on = payload.get("data", {}).get("root")
        data = Path(trained_on) if trained_on else None
    return model, payload, open_dataset(data, category, log=log)


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path | None = None, category: str | None = None,
                        mode: str = "one-step", ddim_steps: int = 30, device: str = "auto", batch_size: int = 8,
                        limit: int | None = None, map_sigma: float | None = None, results_file: str | Path | None = None,
                        overwrite: bool = False, log: Log = print, bars: Bars | None = None):
    """Evaluate the checkpoint at ``checkpoint`` on the test split of ``data`` (an MVTec-layout root with
    ``category``, or a category folder; default: the dataset it was trained on) in ``mode`` (see
    :data:`~diffusionad_edge.config.MODES`; ``ddim_steps`` for ``ddim``) and return the
    :class:`~diffusionad_edge.evaluate.evaluator.EvalResult`, its ``extra`` naming the checkpoint, dataset,
    mode, map smoothing, preset and step.

    ``limit``: at most this many test images, balanced over defect types; ``map_sigma``: the anomaly
    map's blur in pixels (0: the raw map; default: the checkpoint's own); ``results_file``: also write
    the result there as JSON, checked before the model is loaded (never an input, an existing file only
    with ``overwrite``). ``log``: notes on the dataset; ``bars``: the progress bar (see
    :mod:`diffusionad_edge.progress`)."""
    from ..data.framing import preprocessing_of
    from ..hardware import resolve_device
    from ..runtime.backends.torch import TorchRunner
    from .evaluator import evaluate

    check_mode(mode)
    if results_file is not None:
        _check_results_file(Path(results_file), checkpoint, data, overwrite)
    model, payload, dataset = _open(checkpoint, data, category, map_sigma, log)
    runner = TorchRunner(model, resolve_device(device), mode, ddim_steps)
    total = len(dataset.test_samples) if limit is None else min(limit, len(dataset.test_samples))
    with (bars or no_bar)(f"eval {mode}", total, with_info=False) as update:
        result = evaluate(dataset, runner, preprocessing_of(model.config, payload), batch_size,
                          progress=lambda done, _total: update(done), limit=limit)
    result.extra.update({"checkpoint": str(checkpoint), "dataset": str(dataset.path), "mode": mode,
                         "map_sigma": model.config.diffusion.map_sigma,
                         "preset": model.config.preset, "step": payload.get("step")})
    if results_file is not None:
        write_json(Path(results_file), result.to_dict())
    return result


def study_noise(checkpoint: str | Path, repeats: int, data: str | Path | None = None, category: str | None = None,
                device: str = "auto", limit: int | None = None, map_sigma: float | None = None,
                results_file: str | Path | None = None, overwrite: bool = False, log: Log = print) -> dict[str, Any]:
    """The noise study (:func:`~diffusionad_edge.evaluate.noise_study.noise_study`) of the checkpoint at
    ``checkpoint``: the test split once with the fixed noise and ``repeats`` times with fresh noise per
    image; returns the metrics of both and the score jitter, with the checkpoint and dataset. The
    dataset, ``limit``, ``map_sigma`` and ``results_file`` as in :func:`evaluate_checkpoint`; ``log``:
    a line as each run ends."""
    from ..hardware import resolve_device
    from .noise_study import noise_study

    if results_file is not None:
        _check_results_file(Path(results_file), checkpoint, data, overwrite)
    model, _, dataset = _open(checkpoint, data, category, map_sigma, log)
    study = noise_study(model, dataset, repeats, resolve_device(device), limit, progress=log)
    study.update({"checkpoint": str(checkpoint), "dataset": str(dataset.path)})
    if results_file is not None:
        write_json(Path(results_file), study)
    return study
