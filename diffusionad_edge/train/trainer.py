"""Joint training of the denoising and segmentation sub-networks (``dae train``).

One step: a batch of half clean, half synthetic-anomaly images; t_s ~ U{0..t_split-1} and
t_b ~ U{t_split..T-1} (or, with ``timesteps="deployed"``, t_s and t_b of the exported graph with a
small jitter) with independent fresh noise; both denoiser passes as one batch of two; norm-guided
x0_g; segmentation of concat(x0, x0_g); the loss of :mod:`.losses`; one Adam step for each
sub-network with its own learning rate (optionally warmed up and cosine-decayed); then an update
of the weight average (EMA) that the checkpoint's ``model`` holds.

Ctrl-C is taken at a step boundary (:mod:`.stopping`): the step in flight finishes, the checkpoint is
written and the run stops, so ``--resume`` continues exactly as if it had never stopped. What each step
draws and its learning rate are pure functions of seed and step (:mod:`.schedule`); the weight average
lives in :mod:`.averaging`, the choice of device in :mod:`..hardware`.

With several processes (torchrun, see :mod:`.distributed`) each rank trains on its share of the
same global batch; gradients are averaged, BatchNorm sees the whole global batch, and only rank 0
validates and writes checkpoints.

Model selection never looks at the test set: the checkpoint kept is the last one. A held-out part
of ``train/good`` (``val_fraction``) is scored at the end, for thresholds and a sanity number.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import ModelConfig, TrainConfig
from ..data.framing import Preprocessing, preprocessing_of
from ..data.mvtec import MVTecCategory, split_train_val
from ..data.preprocess import to_chw_float
from ..data.synthesis import AnomalySynthesizer
from ..errors import ConfigError, DaeError
from ..evaluate.metrics import image_auroc
from ..hardware import resolve_device, resolve_train_precision
from ..models.detector import DiffusionAD
from ..paths import check_apart, check_output_file
from .averaging import WeightAverage
from .checkpoint import load_model, save_checkpoint
from .distributed import SINGLE, DistContext, check_batch, share_rows, sync_batchnorm
from .losses import diffusionad_loss
from .samples import StepSampler, SyntheticAnomalySamples, load_foreground_masks, load_images
from .schedule import lr_factor, step_noise
from .start import Resume, added_normals, init_weights, load_init, read_resume
from .stopping import StopOnSigint, TrainingInterrupted

# the names this module has always offered (CLI, benchmarks and tests import them from here)
__all__ = ["Trainer", "TrainResult", "TrainingInterrupted", "WeightAverage", "lr_factor", "resolve_device", "step_noise"]


@dataclass
class TrainResult:
    checkpoint: Path
    step: int
    last_losses: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0


ProgressFn = Callable[[int, int, dict[str, float], float], None]


class _StepForward(torch.nn.Module):
    """The forward half of a training step as one module call: what DistributedDataParallel wraps
    (it synchronises the gradients of whatever its ``forward`` computed)."""

    def __init__(self, model: DiffusionAD):
        super().__init__()
        self.model = model

    def forward(self, image, t_s, t_b, eps_s, eps_b):  # type: ignore[override]
        x0_g, eps_s_hat, eps_b_hat = self.model.guided_reconstruction(image, t_s, t_b, eps_s, eps_b)
        return eps_s_hat, eps_b_hat, self.model.segment_logits(image, x0_g)


class Trainer:
    """Owns the model, the optimisers and the data for one training run (or, with ``dist``, for
    one rank of a multi-process run)."""

    def __init__(
        self,
        model_config: ModelConfig,
        train_config: TrainConfig,
        dataset: MVTecCategory,
        out_path: str | Path,
        device: str = "auto",
        resume: str | Path | None = None,
        overwrite: bool = False,
        preprocessing: Preprocessing | None = None,
        dist: DistContext = SINGLE,
        init: str | Path | None = None,
        add_normals: str | Path | None = None,
    ):
        """``resume``: continue that checkpoint's run; ``init``: a new run from that checkpoint's
        weights; ``add_normals``: a folder of more normal images to train on (:mod:`.start`)."""
        self.cfg = train_config.validate()
        self.dist = dist
        #: checkpoint files this process wrote (rank 0 only ever writes)
        self.checkpoint_writes = 0
        self._last_write = time.monotonic()  # for cfg.checkpoint_minutes
        #: processes of the run that wrote the resumed checkpoint (None: not resumed)
        self.resumed_world_size: int | None = None
        self.dataset = dataset
        self.out_path = Path(out_path)
        if resume is not None and (init is not None or add_normals is not None):
            raise ConfigError("--resume continues a run as it was; --init and --add-normals start a new one: give one or the other")
        # Checked before any work: a run must not end in an unwritable path after hours of steps.
        same_file = resume is not None and Path(resume).resolve() == self.out_path.resolve()
        check_apart(self.out_path, "checkpoint", [("the training data", dataset.path), ("the texture folder", self.cfg.textures),
                                                  ("the foreground masks folder", self.cfg.foreground_masks),
                                                  ("the checkpoint of --init", init), ("the folder of --add-normals", add_normals)])
        check_output_file(
            self.out_path, "checkpoint", overwrite=overwrite or same_file,
            hint="pass --resume to continue it or --overwrite to replace it",
        )
        self.device = resolve_device(device)
        self.precision = resolve_train_precision(self.cfg.precision, self.device.type, self.cfg.amp)
        self.step = 0
        self.history: list[dict[str, float]] = []

        resumed = None
        #: where the weights of a run started with --init came from (kept through resumes)
        self.init: dict[str, Any] | None = None
        #: the images trained on beside the dataset's (--add-normals; a resumed run's own)
        self.added_paths: list[Path] = added_normals(add_normals) if add_normals is not None else []
        if resume is not None:
            resumed = read_resume(resume, self.cfg)
            model_config, preprocessing, self.cfg = resumed.model_config, resumed.preprocessing, resumed.cfg
            self.resumed_world_size = resumed.world_size
            self.init = resumed.payload.get("init")
            self.added_paths = resumed.added_normals
        init_state = None
        if init is not None:
            init_state, self.init = init_weights(init, model_config)
        check_batch(self.cfg.batch_size, dist.world_size)

        # What the networks see: the ROI, resized to the input size or cut into tiles (data/framing.py).
        self.preprocessing = preprocessing or preprocessing_of(model_config)
        if self.preprocessing.input_hw != model_config.input_hw:
            raise ConfigError(f"preprocessing input {self.preprocessing.input_hw} differs from the model's {model_config.input_hw}")
        crop = self.cfg.crop_size
        if crop is None and self.preprocessing.tile is not None:
            # Tiled: random tile-sized crops of the full-resolution images.
            self.cfg = TrainConfig.from_dict({**self.cfg.to_dict(), "crop_size": self.preprocessing.tile})
            crop = self.cfg.crop_size
        if crop is not None:
            div = model_config.size_divisor
            if crop > min(model_config.input_hw) or crop % div:
                raise ConfigError(
                    f"--crop-size {crop} must be at most {min(model_config.input_hw)} and a multiple of {div} "
                    f"for preset {model_config.preset!r}"
                )
        torch.manual_seed(self.cfg.seed)
        self.model = DiffusionAD(model_config).to(self.device)
        if init_state is not None:  # weights only: the optimisers, the schedule and the average start afresh
            load_init(self.model, init_state, init)
        self.opt_denoiser = torch.optim.Adam(self.model.denoiser.parameters(), lr=self.cfg.lr_denoiser)
        self.opt_segmenter = torch.optim.Adam(self.model.segmenter.parameters(), lr=self.cfg.lr_segmenter)
        # GradScaler only for fp16 (bf16 has fp32's exponent range and needs none).
        self.use_amp = self.precision == "fp16"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        # channels-last: oneDNN's (and cuDNN's) fast convolution layout; no effect on the maths.
        self.memory_format = torch.channels_last if self.device.type in ("cpu", "cuda") else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.ema = WeightAverage(self.model, self.cfg.ema_decay) if self.cfg.ema_decay > 0 else None
        if dist.active:
            # BatchNorm over the global batch (the average keeps plain BatchNorm: it never trains).
            self.model = sync_batchnorm(self.model, self.device)
        self.train_seconds = 0.0
        self._time_budget_s: float | None = None
        if resumed is not None:
            self._restore(resumed)

        train_paths, self.val_paths = split_train_val(dataset.train_images, self.cfg.val_fraction, self.cfg.seed)
        self.train_paths = train_paths
        prep = self.preprocessing
        self.synthesizer = AnomalySynthesizer(
            self.cfg.textures, foreground_mode=self.cfg.foreground, kinds=self.cfg.synthesis
        )
        # The added normals come after the dataset's: sample i draws image k of this list (samples.py).
        masks = None
        if self.cfg.foreground_masks:  # the user's masks cover the dataset's images; the added ones are estimated
            masks = load_foreground_masks(train_paths, self.cfg.foreground_masks, prep) + [None] * len(self.added_paths)
        self.samples = SyntheticAnomalySamples(
            load_images(train_paths + self.added_paths, prep), self.synthesizer, self.cfg.batch_size, self.cfg.seed,
            self.cfg.foreground, crop_size=self.cfg.crop_size, user_masks=masks, anomaly_scale=self.cfg.anomaly_scale,
        )
        # Last: wrapping the model talks to the other ranks, so everything that can fail alike on
        # every rank (the data above) has failed before.
        self._forward: torch.nn.Module = _StepForward(self.model)
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self._forward = DistributedDataParallel(self._forward, device_ids=ids)
        # Positions of this rank's samples in the global batch (all of them in one process).
        self._rows = torch.tensor(share_rows(self.cfg.batch_size, dist.world_size, dist.rank))

    def _restore(self, resumed: Resume) -> None:
        """The state of a resumed run: weights, weight average, optimisers, step, history."""
        payload = resumed.payload
        model, _ = load_model(resumed.path)
        # "model" holds the averaged (deployable) weights; "model_train" the raw ones.
        if self.ema is not None:
            self.ema.model.load_state_dict(model.state_dict())
            self.ema.updates = int(payload.get("ema_updates", 0))
        raw = payload.get("model_train")
        self.model.load_state_dict(raw if raw is not None else model.state_dict())
        self.train_seconds = float(payload.get("train_seconds", 0.0))
        self.opt_denoiser.load_state_dict(payload["optim_denoiser"])
        self.opt_segmenter.load_state_dict(payload["optim_segmenter"])
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        self.history = list(payload.get("history", []))

    # -- persistence ---------------------------------------------------------------------------
    def save(self, validation: dict[str, Any] | None = None) -> None:
        """Write the checkpoint (atomically); on ranks other than 0, nothing."""
        if not self.dist.is_main:
            return
        rel = lambda paths: [str(p.relative_to(self.dataset.path)) for p in paths]  # noqa: E731
        deployable = self.ema.model if self.ema is not None else self.model
        save_checkpoint(
            self.out_path,
            deployable,
            model_train={k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
            if self.ema is not None else None,
            ema_updates=self.ema.updates if self.ema is not None else 0,
            train_seconds=self.train_seconds,
            precision=self.precision,
            step=self.step,
            train_config=self.cfg.to_dict(),
            preprocessing=self.preprocessing.to_dict(),
            optim_denoiser=self.opt_denoiser.state_dict(),
            optim_segmenter=self.opt_segmenter.state_dict(),
            scaler=self.scaler.state_dict() if self.use_amp else {},
            history=self.history,
            data={
                "root": str(self.dataset.path),
                "category": self.dataset.name,
                "train_images": rel(self.train_paths),
                "val_images": rel(self.val_paths),
                # trained on too, beside train_images (absolute: they live outside the dataset)
                **({"added_normals": [str(p.resolve()) for p in self.added_paths]} if self.added_paths else {}),
            },
            **({"init": self.init} if self.init is not None else {}),
            validation=validation or {},
            world_size=self.dist.world_size,
        )
        self.checkpoint_writes += 1
        self._last_write = time.monotonic()

    # -- one step ------------------------------------------------------------------------------
    def train_step(self, image: torch.Tensor, mask: torch.Tensor, is_clean: torch.Tensor) -> dict[str, float]:
        d = self.model.config.diffusion
        deployed = (d.t_s, d.t_b) if self.cfg.timesteps == "deployed" else None
        # The noises of the global batch; one rank of several keeps the rows of its own samples.
        shape = (self.cfg.batch_size, *image.shape[1:]) if self.dist.active else tuple(image.shape)
        t_s, t_b, eps_s, eps_b = step_noise(
            self.cfg.seed, self.step, shape, d.t_split, d.num_timesteps, deployed, self.cfg.t_jitter
        )
        if self.dist.active:
            t_s, t_b, eps_s, eps_b = (x[self._rows] for x in (t_s, t_b, eps_s, eps_b))
        dev, fmt = self.device, self.memory_format
        image, mask, is_clean = image.to(dev, memory_format=fmt), mask.to(dev), is_clean.to(dev)
        t_s, t_b = t_s.to(dev), t_b.to(dev)
        eps_s, eps_b = eps_s.to(dev, memory_format=fmt), eps_b.to(dev, memory_format=fmt)
        self._set_learning_rates()
        if self.precision in ("fp16", "bf16"):
            dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
            autocast = torch.autocast(dev.type, dtype=dtype)
        else:
            autocast = contextlib.nullcontext()
        with autocast:
            eps_s_hat, eps_b_hat, logits = self._forward(image, t_s, t_b, eps_s, eps_b)
            prob = torch.sigmoid(logits)
        loss = diffusionad_loss(
            eps_s_hat, eps_s, eps_b_hat, eps_b, is_clean, prob, mask,
            self.cfg.focal_weight, self.cfg.focal_alpha, self.cfg.focal_gamma, self.cfg.dice_weight,
        )
        reported = self._global_losses(loss.as_floats())
        if not math.isfinite(reported["total"]):
            raise DaeError(f"loss became {reported['total']} at step {self.step}; lower the learning rates")
        self.opt_denoiser.zero_grad(set_to_none=True)
        self.opt_segmenter.zero_grad(set_to_none=True)
        self.scaler.scale(loss.total).backward()
        self.scaler.step(self.opt_denoiser)
        self.scaler.step(self.opt_segmenter)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return reported

    def _global_losses(self, local: dict[str, float]) -> dict[str, float]:
        """The loss of the global batch: the mean of the ranks' (equal-sized shares). Every rank
        gets the same numbers, so a non-finite loss stops all of them at the same step."""
        if not self.dist.active:
            return local
        import torch.distributed as tdist

        values = torch.tensor(list(local.values()), dtype=torch.float64)
        tdist.all_reduce(values)
        return dict(zip(local, (values / self.dist.world_size).tolist()))

    def _agree(self, stop: bool, budget_reached: bool) -> tuple[bool, bool]:
        """All ranks take the same decisions at a step boundary: stop if any rank was asked to (its
        Ctrl-C), and use rank 0's training time (the learning rate of a time-boxed run depends on
        it, and must not differ between ranks)."""
        if not self.dist.active:
            return stop, budget_reached
        import torch.distributed as tdist

        flags = torch.tensor([float(stop), self.train_seconds if self.dist.is_main else 0.0], dtype=torch.float64)
        tdist.all_reduce(flags)
        self.train_seconds = float(flags[1])
        budget_reached = self._time_budget_s is not None and self.train_seconds >= self._time_budget_s
        return bool(flags[0] > 0), budget_reached

    def _set_learning_rates(self) -> None:
        progress = None
        budget = self._time_budget_s
        if budget and self.cfg.lr_schedule == "cosine" and self.step >= self.cfg.warmup_steps:
            # A time-boxed run decays over whichever ends first, its steps or its minutes.
            by_steps = (self.step - self.cfg.warmup_steps) / max(self.cfg.steps - self.cfg.warmup_steps, 1)
            progress = max(by_steps, self.train_seconds / budget)
        f = lr_factor(self.cfg.lr_schedule, self.step, self.cfg.steps, self.cfg.warmup_steps, progress)
        for opt, base in ((self.opt_denoiser, self.cfg.lr_denoiser), (self.opt_segmenter, self.cfg.lr_segmenter)):
            for group in opt.param_groups:
                group["lr"] = base * f

    # -- the loop ------------------------------------------------------------------------------
    def fit(
        self,
        progress: ProgressFn | None = None,
        time_budget_s: float | None = None,
        snapshots_s: tuple[float, ...] = (),
    ) -> TrainResult:
        """Train to ``cfg.steps`` (or until ``time_budget_s`` of training time, counted across
        resumes, is spent), validate, save the checkpoint.

        ``snapshots_s``: training times (seconds) at which a copy of the checkpoint is also written
        next to it as ``<stem>-<minutes>min.pt`` (for learning curves).
        """
        total = self.cfg.steps
        if self.step >= total:
            raise ConfigError(f"checkpoint is already at step {self.step}; pass --steps above it to train on")
        if time_budget_s is not None and self.train_seconds >= time_budget_s:
            raise ConfigError(
                f"checkpoint has already trained {self.train_seconds / 60:.1f} min; pass --minutes above it to train on"
            )
        self._time_budget_s = time_budget_s
        world = self.dist.world_size
        loader = DataLoader(
            self.samples,
            batch_size=self.cfg.batch_size // world,
            sampler=StepSampler(self.step, total, self.cfg.batch_size, world, self.dist.rank),
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        self.model.train()
        losses: dict[str, float] = {}
        smoothed: dict[str, float] = {}
        pending_snapshots = sorted(s for s in snapshots_s if s > self.train_seconds)
        t0 = time.perf_counter()
        seconds_at_start = self.train_seconds
        self._last_write = time.monotonic()
        with StopOnSigint() as stop:
            try:
                batches = iter(loader)
                while not stop.requested:
                    try:
                        image, mask, is_clean = next(batches)
                    except StopIteration:
                        break
                    losses = self.train_step(image, mask, is_clean)
                    self.step += 1
                    self.train_seconds = seconds_at_start + time.perf_counter() - t0
                    stop_all, budget_reached = self._agree(
                        stop.requested, time_budget_s is not None and self.train_seconds >= time_budget_s
                    )
                    if stop_all and not stop.requested:
                        stop.requested = True  # another rank's Ctrl-C: stop here with it
                    smoothed = {k: v if k not in smoothed else 0.9 * smoothed[k] + 0.1 * v for k, v in losses.items()}
                    if self.step % 10 == 0 or self.step == total:
                        self.history.append({"step": float(self.step), **smoothed})
                    if progress is not None:
                        progress(self.step, total, smoothed, time.perf_counter() - t0)
                    while pending_snapshots and self.train_seconds >= pending_snapshots[0]:
                        snap_start = time.perf_counter()
                        self._snapshot(pending_snapshots.pop(0))
                        t0 += time.perf_counter() - snap_start  # validation is not training time
                    if self.step < total and (
                        (self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0)
                        or (self.cfg.checkpoint_minutes and time.monotonic() - self._last_write >= self.cfg.checkpoint_minutes * 60)
                    ):
                        self.save()
                    if budget_reached:
                        break
            except RuntimeError:
                # Data-loader workers also receive Ctrl-C and exit; the main process then learns
                # of it while fetching the next batch, i.e. between two steps.
                if not stop.requested:
                    raise
            if stop.requested:
                self.save()
                raise TrainingInterrupted(
                    f"interrupted after step {self.step} (the step in flight was finished); checkpoint "
                    f"saved to {self.out_path} (continue with --resume {self.out_path})"
                )
        validation = self.validate()
        self.save(validation)
        return TrainResult(self.out_path, self.step, losses, self.history, validation, self.train_seconds)

    def snapshot_path(self, seconds: float) -> Path:
        return self.out_path.with_name(f"{self.out_path.stem}-{seconds / 60:g}min{self.out_path.suffix}")

    def _snapshot(self, seconds: float) -> None:
        """A copy of the checkpoint at this point of training (validated like a final one)."""
        if not self.dist.is_main:
            return
        out, self.out_path = self.out_path, self.snapshot_path(seconds)
        try:
            self.save(self.validate())
        finally:
            self.out_path = out

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Score held-out normal images and synthetic anomalies made from them (never the test set).
        Rank 0's job in a multi-process run (the others return nothing)."""
        if not self.val_paths or not self.dist.is_main:
            return {}
        net = self.ema.model if self.ema is not None else self.model
        net.eval()
        rng = np.random.default_rng([self.cfg.seed, 999_999])
        # One network-sized view per held-out image (a random tile of a tiled model's image).
        images = [self.preprocessing.view(img, rng) for img in load_images(self.val_paths, self.preprocessing)]
        anomalous = [self.synthesizer.synthesize(img, rng)[0] for img in images]
        batch = torch.from_numpy(np.stack([to_chw_float(img) for img in images + anomalous]))
        scores = [net.detect(chunk.to(self.device)).score.cpu() for chunk in batch.split(8)]
        all_scores = torch.cat(scores).numpy()
        labels = np.r_[np.zeros(len(images)), np.ones(len(anomalous))]
        self.model.train()
        auroc = image_auroc(labels, all_scores)
        return {
            "normal_scores": [float(s) for s in all_scores[: len(images)]],
            "synthetic_scores": [float(s) for s in all_scores[len(images):]],
            "synthetic_image_auroc": None if math.isnan(auroc) else auroc,
        }
