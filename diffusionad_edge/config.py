"""Configuration dataclasses and the named presets.

A :class:`ModelConfig` fully describes the networks, the diffusion schedule and the inference
settings; it is saved (as JSON) inside every checkpoint and every export bundle and rebuilt from
there, so a file always carries the exact model it holds.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError


@dataclass
class UNetConfig:
    """Denoising U-Net (guided-diffusion style): eps_theta(x_t, t)."""

    in_channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (32, 16, 8)
    num_heads: int = 4
    dropout: float = 0.0
    # Time embedding: sinusoidal of size base_channels, then an MLP to 4 * base_channels.
    time_embed_mult: int = 4
    groups: int = 32


@dataclass
class SegConfig:
    """Segmentation U-Net (DRAEM-style discriminative network) on concat(x0, x0_g)."""

    in_channels: int = 6
    encoder_channels: tuple[int, ...] = (64, 128, 256, 512, 512, 512)


@dataclass
class DiffusionConfig:
    """Linear DDPM schedule and the fixed inference timesteps of the norm-guided one-step mode."""

    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    t_s: int = 200
    t_b: int = 400
    guidance_w: float = 1.0
    # Training draws t_s ~ U{0..t_split-1}, t_b ~ U{t_split..T-1}.
    t_split: int = 300
    # Image score: mean of the top-k pixels of the anomaly map.
    top_k: int = 50


@dataclass
class ModelConfig:
    """Everything needed to rebuild a DiffusionAD model."""

    preset: str = "paper"
    image_size: int = 256
    unet: UNetConfig = field(default_factory=UNetConfig)
    seg: SegConfig = field(default_factory=SegConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        try:
            return cls(
                preset=str(data["preset"]),
                image_size=int(data["image_size"]),
                unet=_build(UNetConfig, data["unet"]),
                seg=_build(SegConfig, data["seg"]),
                diffusion=_build(DiffusionConfig, data["diffusion"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid model config: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"model config is not valid JSON: {exc}") from None

    def validate(self) -> "ModelConfig":
        """Check cross-field constraints; return self for chaining."""
        d = self.diffusion
        if not 0 <= d.t_s < d.num_timesteps or not 0 <= d.t_b < d.num_timesteps:
            raise ConfigError(f"t_s={d.t_s} and t_b={d.t_b} must lie in [0, {d.num_timesteps})")
        if not 0 < d.t_split < d.num_timesteps:
            raise ConfigError(f"t_split={d.t_split} must lie in (0, {d.num_timesteps})")
        levels = len(self.unet.channel_mult)
        if self.image_size % (2 ** (levels - 1)):
            raise ConfigError(
                f"image_size {self.image_size} must be divisible by {2 ** (levels - 1)} "
                f"for a U-Net with {levels} levels"
            )
        seg_levels = len(self.seg.encoder_channels)
        if self.image_size % (2 ** (seg_levels - 1)):
            raise ConfigError(
                f"image_size {self.image_size} must be divisible by {2 ** (seg_levels - 1)} "
                f"for a segmentation net with {seg_levels} encoder blocks"
            )
        if self.image_size * self.image_size < d.top_k:
            raise ConfigError(f"top_k={d.top_k} exceeds the number of pixels")
        return self


def _build(cls: type, data: dict[str, Any]) -> Any:
    """Build a flat dataclass from a dict, turning JSON lists back into tuples."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


def _paper() -> ModelConfig:
    return ModelConfig(preset="paper")


def _edge() -> ModelConfig:
    # About 1% of the paper preset's FLOPs at the same 256x256 input. At 256 px the cost of a
    # U-Net level is set by width x resolution, so the full-resolution levels are kept narrow
    # (16 channels) and width grows only where the feature maps are small; one res-block per
    # level, attention only at 16 px. The segmentation net is DRAEM's at an eighth of the width.
    return ModelConfig(
        preset="edge",
        image_size=256,
        unet=UNetConfig(
            base_channels=16,
            channel_mult=(1, 1, 2, 2, 4, 4),
            num_res_blocks=1,
            attention_resolutions=(16,),
            num_heads=4,
            groups=8,
        ),
        seg=SegConfig(encoder_channels=(8, 16, 32, 64, 64, 64)),
    )


def _tiny() -> ModelConfig:
    # For tests: a few seconds of CPU per training step at most.
    return ModelConfig(
        preset="tiny",
        image_size=64,
        unet=UNetConfig(
            base_channels=16,
            channel_mult=(1, 2, 2),
            num_res_blocks=1,
            attention_resolutions=(16,),
            num_heads=2,
            groups=8,
        ),
        seg=SegConfig(encoder_channels=(8, 16, 32, 32)),
        diffusion=DiffusionConfig(top_k=20),
    )


#: Inference paradigms of the detector (``DiffusionAD.detect``): the product's one-step mode and
#: the paper's iterative references.
MODES = ("one-step", "iterative", "ddim")

PRESETS = {"paper": _paper, "edge": _edge, "tiny": _tiny}


def preset(name: str) -> ModelConfig:
    """Return a fresh :class:`ModelConfig` for a named preset."""
    try:
        return PRESETS[name]().validate()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


@dataclass
class TrainConfig:
    """How a model is trained; saved in the checkpoint next to the :class:`ModelConfig`.

    The defaults are the paper's recipe (Adam 1e-4 for the denoiser, 1e-5 for the segmentation
    net, batches of 8 clean + 8 synthetic anomalies, focal weight 5).
    """

    steps: int = 2000
    batch_size: int = 16
    lr_denoiser: float = 1e-4
    lr_segmenter: float = 1e-5
    focal_weight: float = 5.0
    focal_alpha: float = 0.5
    focal_gamma: float = 4.0
    seed: int = 0
    # Fraction of train/good held out (never trained on) for thresholds and sanity checks.
    val_fraction: float = 0.1
    foreground: str = "auto"
    textures: str | None = None
    # Folder of user foreground masks (<stem>.png per training image); overrides the estimate.
    foreground_masks: str | None = None
    # Train on random crop_size x crop_size patches instead of whole images (None: whole images).
    crop_size: int | None = None
    checkpoint_every: int = 500
    num_workers: int = 0
    amp: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        try:
            return _build(cls, data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid train config: {exc}") from None

    def validate(self) -> "TrainConfig":
        if self.steps < 1:
            raise ConfigError(f"--steps must be at least 1 (got {self.steps})")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size must be at least 2, half clean and half synthetic (got {self.batch_size})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must lie in [0, 1) (got {self.val_fraction})")
        if self.foreground not in ("auto", "object", "texture"):
            raise ConfigError(f"--foreground must be auto, object or texture (got {self.foreground!r})")
        if self.lr_denoiser <= 0 or self.lr_segmenter <= 0:
            raise ConfigError("learning rates must be positive")
        return self
