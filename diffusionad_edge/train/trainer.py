"""Joint training of the denoising and segmentation sub-networks (``dae train``).

One step: a batch of half clean, half synthetic-anomaly images; t_s ~ U{0..t_split-1} and
t_b ~ U{t_split..T-1} with independent fresh noise; both denoiser passes as one batch of two;
norm-guided x0_g; segmentation of concat(x0, x0_g); the loss of :mod:`.losses`; one Adam step for
each sub-network with its own learning rate.

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
from ..data.mvtec import MVTecCategory, split_train_val
from ..data.preprocess import to_chw_float
from ..data.synthesis import AnomalySynthesizer
from ..errors import CheckpointError, ConfigError, DaeError
from ..evaluate.metrics import image_auroc
from ..models.detector import DiffusionAD
from .checkpoint import load_model, read_checkpoint, save_checkpoint
from .losses import diffusionad_loss
from .samples import StepSampler, SyntheticAnomalySamples, load_foreground_masks, load_images


class TrainingInterrupted(DaeError):
    """Ctrl-C during training; the checkpoint has been saved."""

    exit_code = 130


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but this PyTorch build sees no CUDA GPU")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps asked for, but MPS is not available here")
    return device


def step_noise(seed: int, step: int, shape: tuple[int, ...], t_split: int, T: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Timesteps and noises of one training step, a pure function of (seed, step), drawn on CPU."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    b = shape[0]
    t_s = torch.randint(0, t_split, (b,), generator=g)
    t_b = torch.randint(t_split, T, (b,), generator=g)
    eps_s = torch.randn(shape, generator=g)
    eps_b = torch.randn(shape, generator=g)
    return t_s, t_b, eps_s, eps_b


@dataclass
class TrainResult:
    checkpoint: Path
    step: int
    last_losses: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[int, int, dict[str, float], float], None]


class Trainer:
    """Owns the model, the optimisers and the data for one training run."""

    def __init__(
        self,
        model_config: ModelConfig,
        train_config: TrainConfig,
        dataset: MVTecCategory,
        out_path: str | Path,
        device: str = "auto",
        resume: str | Path | None = None,
    ):
        self.cfg = train_config.validate()
        self.dataset = dataset
        self.out_path = Path(out_path)
        self.device = resolve_device(device)
        self.step = 0
        self.history: list[dict[str, float]] = []

        resume_payload = None
        if resume is not None:
            resume_payload = read_checkpoint(resume)
            if "optim_denoiser" not in resume_payload:
                raise CheckpointError(f"{resume} has no optimiser state: it cannot be resumed")
            model_config = ModelConfig.from_json(resume_payload["model_config"])

        crop = self.cfg.crop_size
        if crop is not None:
            levels = max(len(model_config.unet.channel_mult), len(model_config.seg.encoder_channels))
            if crop > model_config.image_size or crop % 2 ** (levels - 1):
                raise ConfigError(
                    f"--crop-size {crop} must be at most {model_config.image_size} and divisible by {2 ** (levels - 1)}"
                )
        torch.manual_seed(self.cfg.seed)
        self.model = DiffusionAD(model_config).to(self.device)
        self.opt_denoiser = torch.optim.Adam(self.model.denoiser.parameters(), lr=self.cfg.lr_denoiser)
        self.opt_segmenter = torch.optim.Adam(self.model.segmenter.parameters(), lr=self.cfg.lr_segmenter)
        self.use_amp = self.cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

        if resume_payload is not None:
            model, _ = load_model(resume)
            self.model.load_state_dict(model.state_dict())
            self.opt_denoiser.load_state_dict(resume_payload["optim_denoiser"])
            self.opt_segmenter.load_state_dict(resume_payload["optim_segmenter"])
            if resume_payload.get("scaler"):
                self.scaler.load_state_dict(resume_payload["scaler"])
            self.step = int(resume_payload["step"])
            self.history = list(resume_payload.get("history", []))

        train_paths, self.val_paths = split_train_val(dataset.train_images, self.cfg.val_fraction, self.cfg.seed)
        self.train_paths = train_paths
        size = self.model.config.image_size
        self.synthesizer = AnomalySynthesizer(self.cfg.textures, foreground_mode=self.cfg.foreground)
        self.samples = SyntheticAnomalySamples(
            load_images(train_paths, size), self.synthesizer, self.cfg.batch_size, self.cfg.seed, self.cfg.foreground,
            crop_size=self.cfg.crop_size,
            user_masks=load_foreground_masks(train_paths, self.cfg.foreground_masks, size) if self.cfg.foreground_masks else None,
        )

    # -- persistence ---------------------------------------------------------------------------
    def save(self, validation: dict[str, Any] | None = None) -> None:
        rel = lambda paths: [str(p.relative_to(self.dataset.path)) for p in paths]  # noqa: E731
        save_checkpoint(
            self.out_path,
            self.model,
            step=self.step,
            train_config=self.cfg.to_dict(),
            optim_denoiser=self.opt_denoiser.state_dict(),
            optim_segmenter=self.opt_segmenter.state_dict(),
            scaler=self.scaler.state_dict() if self.use_amp else {},
            history=self.history,
            data={
                "root": str(self.dataset.path),
                "category": self.dataset.name,
                "train_images": rel(self.train_paths),
                "val_images": rel(self.val_paths),
            },
            validation=validation or {},
        )

    # -- one step ------------------------------------------------------------------------------
    def train_step(self, image: torch.Tensor, mask: torch.Tensor, is_clean: torch.Tensor) -> dict[str, float]:
        model, d = self.model, self.model.config.diffusion
        t_s, t_b, eps_s, eps_b = step_noise(self.cfg.seed, self.step, tuple(image.shape), d.t_split, d.num_timesteps)
        dev = self.device
        image, mask, is_clean = image.to(dev), mask.to(dev), is_clean.to(dev)
        t_s, t_b, eps_s, eps_b = t_s.to(dev), t_b.to(dev), eps_s.to(dev), eps_b.to(dev)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.use_amp else contextlib.nullcontext()
        with autocast:
            x0_g, eps_s_hat, eps_b_hat = model.guided_reconstruction(image, t_s, t_b, eps_s, eps_b)
            prob = torch.sigmoid(model.segment_logits(image, x0_g))
        loss = diffusionad_loss(
            eps_s_hat, eps_s, eps_b_hat, eps_b, is_clean, prob, mask,
            self.cfg.focal_weight, self.cfg.focal_alpha, self.cfg.focal_gamma,
        )
        if not torch.isfinite(loss.total):
            raise DaeError(f"loss became {float(loss.total)} at step {self.step}; lower the learning rates")
        self.opt_denoiser.zero_grad(set_to_none=True)
        self.opt_segmenter.zero_grad(set_to_none=True)
        self.scaler.scale(loss.total).backward()
        self.scaler.step(self.opt_denoiser)
        self.scaler.step(self.opt_segmenter)
        self.scaler.update()
        return loss.as_floats()

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, progress: ProgressFn | None = None, time_budget_s: float | None = None) -> TrainResult:
        """Train to ``cfg.steps`` (or until ``time_budget_s`` runs out), validate, save the checkpoint."""
        total = self.cfg.steps
        if self.step >= total:
            raise ConfigError(f"checkpoint is already at step {self.step}; pass --steps above it to train on")
        loader = DataLoader(
            self.samples,
            batch_size=self.cfg.batch_size,
            sampler=StepSampler(self.step, total, self.cfg.batch_size),
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        self.model.train()
        losses: dict[str, float] = {}
        ema: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            for image, mask, is_clean in loader:
                losses = self.train_step(image, mask, is_clean)
                self.step += 1
                ema = {k: v if k not in ema else 0.9 * ema[k] + 0.1 * v for k, v in losses.items()}
                if self.step % 10 == 0 or self.step == total:
                    self.history.append({"step": float(self.step), **ema})
                if progress is not None:
                    elapsed = time.perf_counter() - t0
                    progress(self.step, total, ema, elapsed)
                if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0 and self.step < total:
                    self.save()
                if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                    break
        except KeyboardInterrupt:
            self.save()
            raise TrainingInterrupted(
                f"interrupted at step {self.step}; checkpoint saved to {self.out_path} "
                f"(continue with --resume {self.out_path})"
            ) from None
        validation = self.validate()
        self.save(validation)
        return TrainResult(self.out_path, self.step, losses, self.history, validation)

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Score held-out normal images and synthetic anomalies made from them (never the test set)."""
        if not self.val_paths:
            return {}
        self.model.eval()
        size = self.model.config.image_size
        images = load_images(self.val_paths, size)
        rng = np.random.default_rng([self.cfg.seed, 999_999])
        anomalous = [self.synthesizer.synthesize(img, rng)[0] for img in images]
        batch = torch.from_numpy(np.stack([to_chw_float(img) for img in images + anomalous]))
        scores = [self.model.detect(chunk.to(self.device)).score.cpu() for chunk in batch.split(8)]
        all_scores = torch.cat(scores).numpy()
        labels = np.r_[np.zeros(len(images)), np.ones(len(anomalous))]
        self.model.train()
        auroc = image_auroc(labels, all_scores)
        return {
            "normal_scores": [float(s) for s in all_scores[: len(images)]],
            "synthetic_scores": [float(s) for s in all_scores[len(images):]],
            "synthetic_image_auroc": None if math.isnan(auroc) else auroc,
        }
