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
    # Space-to-depth stem: the image is folded into stem_factor^2 x more channels at
    # 1/stem_factor resolution before the first convolution and unfolded (pixel shuffle) after the
    # last, so no layer runs thin channels at full resolution. 1 = the paper's layout.
    stem_factor: int = 1
    # "group" (the paper's GroupNorm) or "batch" (BatchNorm: folds into the convolutions of an
    # exported graph and quantizes with them).
    norm: str = "group"
    # Preconditioning (0 = off: the paper's plain eps-prediction). With a data standard deviation
    # sigma_data > 0 the network's output F is read as a scaled estimate of the clean image, as in
    # Karras et al.'s EDM: x0_hat = c_skip x + c_out F(c_in x) with x = x_t / sqrt(ab_t), and the
    # module still returns eps_hat = (x - x0_hat) / sigma_t. The noise then reaches the output
    # through an exact skip instead of through every layer, which a network that sees the image
    # through a space-to-depth stem otherwise learns only slowly.
    precondition_sigma_data: float = 0.0
    # The value the data is centred on for that skip (images are in [0, 1]: mid-gray).
    precondition_mean: float = 0.5


@dataclass
class SegConfig:
    """Segmentation U-Net (DRAEM-style discriminative network) on concat(x0, x0_g)."""

    in_channels: int = 6
    encoder_channels: tuple[int, ...] = (64, 128, 256, 512, 512, 512)
    # Space-to-depth stem and pixel-shuffle head, as in :class:`UNetConfig` (1 = DRAEM's layout).
    stem_factor: int = 1
    # Initial anomaly probability of every pixel (the head's bias starts at its logit), as detectors
    # trained with a focal loss do: starting near the true rarity of anomalous pixels skips the
    # early phase in which the net outputs a constant ~0.2 everywhere. 0 = PyTorch's default init.
    head_prior: float = 0.0


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
    # Gaussian blur (sigma in pixels of the input) of the anomaly map at inference, before the
    # image score: the segmentation net's maps are steep and mark part of a defect; a blur spreads
    # them over its neighbourhood (see models/map_smoothing.py). 0 = the raw map (the paper's code).
    # Training never sees it: the mask losses apply to the raw map.
    map_sigma: float = 0.0


@dataclass
class ModelConfig:
    """Everything needed to rebuild a DiffusionAD model."""

    preset: str = "paper"
    #: Input height (and width, unless ``image_width`` is set).
    image_size: int = 256
    #: Input width of a rectangular input (``--input-size HxW``); None: square.
    image_width: int | None = None
    unet: UNetConfig = field(default_factory=UNetConfig)
    seg: SegConfig = field(default_factory=SegConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    @property
    def input_hw(self) -> tuple[int, int]:
        """The network's input (height, width)."""
        return self.image_size, self.image_width or self.image_size

    @property
    def arch_size(self) -> int:
        """The side the networks' layout is keyed on (attention levels sit at fixed resolutions of
        it): the shorter side, so a 256-pixel model also takes 256xW rectangles with the same weights."""
        return min(self.input_hw)

    def with_input(self, hw: tuple[int, int]) -> "ModelConfig":
        """A copy at another input size (square when height == width)."""
        cfg = ModelConfig.from_dict(self.to_dict())
        cfg.image_size, cfg.image_width = int(hw[0]), (int(hw[1]) if hw[1] != hw[0] else None)
        return cfg

    @property
    def size_divisor(self) -> int:
        """Every input size (and training crop) must be a multiple of this."""
        unet = self.unet.stem_factor * 2 ** (len(self.unet.channel_mult) - 1)
        seg = self.seg.stem_factor * 2 ** (len(self.seg.encoder_channels) - 1)
        return max(unet, seg)

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
                image_width=None if data.get("image_width") is None else int(data["image_width"]),
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
        if self.unet.norm not in ("group", "batch"):
            raise ConfigError(f"unet.norm must be 'group' or 'batch' (got {self.unet.norm!r})")
        if self.unet.precondition_sigma_data < 0:
            raise ConfigError(f"unet.precondition_sigma_data must be >= 0 (got {self.unet.precondition_sigma_data})")
        if self.unet.stem_factor < 1 or self.seg.stem_factor < 1:
            raise ConfigError("stem_factor must be at least 1")
        if not 0.0 <= self.seg.head_prior < 1.0:
            raise ConfigError(f"seg.head_prior must lie in [0, 1) (got {self.seg.head_prior})")
        divisor = self.size_divisor
        h, w = self.input_hw
        if h % divisor or w % divisor or min(h, w) < 1:
            what = f"input size {h} must be a multiple" if h == w else f"input size {h}x{w} (HxW): both sides must be multiples"
            raise ConfigError(
                f"{what} of {divisor} for preset {self.preset!r} (its stem and U-Net levels halve the size that often)"
            )
        if not 0.0 <= d.map_sigma <= 32.0:
            raise ConfigError(f"map_sigma must lie in [0, 32] pixels (got {d.map_sigma})")
        if h * w < d.top_k:
            raise ConfigError(f"top_k={d.top_k} exceeds the number of pixels")
        return self


def _build(cls: type, data: dict[str, Any]) -> Any:
    """Build a flat dataclass from a dict, turning JSON lists back into tuples."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} fields {sorted(unknown)}: the file was written by a newer "
            "diffusionad_edge (or another tool); upgrade to load it"
        )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


def _paper() -> ModelConfig:
    return ModelConfig(preset="paper")


def _edge_v1() -> ModelConfig:
    # The first edge layout (the `edge` preset before 0.2): about 1% of the paper preset's FLOPs
    # at 256x256, with 16-channel levels at full resolution. Those thin full-resolution layers are
    # memory-bound on CPUs and GPUs alike (about a fifth of the achievable GFLOP/s); `edge` replaced
    # it. Kept so its checkpoints and measurements stay reproducible.
    return ModelConfig(
        preset="edge-v1",
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


def _edge_layout(name: str, seg_stem: int) -> ModelConfig:
    # Shaped for the hardware: a 4x space-to-depth stem (256x256x3 -> 64x64x48) and a pixel-shuffle
    # head, so the denoiser's widest maps are 64x64 and every layer has at least 64 channels (multiples
    # of 32 keep vector units and tensor cores full). BatchNorm folds into the convolutions of the
    # exported graph. The segmentation net works the same way with four levels and about 10x the
    # parameters of edge-v1's, which is capacity the CPU gives nearly for free.
    return ModelConfig(
        preset=name,
        image_size=256,
        unet=UNetConfig(
            base_channels=64,
            channel_mult=(1, 2, 4),
            num_res_blocks=1,
            attention_resolutions=(16,),
            num_heads=4,
            groups=32,
            stem_factor=4,
            norm="batch",
            # Without preconditioning this stem learns the noise more than 20x slower per step (measured:
            # README, "The edge model").
            precondition_sigma_data=0.25,
        ),
        seg=SegConfig(encoder_channels=(64, 128, 256, 256), stem_factor=seg_stem, head_prior=0.01),
        # A blur of sigma 2 px on the map: the one value that raised every overall metric on both shared
        # datasets in the localisation study (benchmarks/LOCALISATION.md); sigma 4, the field's usual
        # protocol, helped Toothbrush more but cost Magnetic Tile's small blowholes.
        diffusion=DiffusionConfig(map_sigma=2.0),
    )


def _edge_v2() -> ModelConfig:
    # The previous `edge` (until round 5 of the localisation study): the segmentation net at 1/4 of the
    # input side (64x64 for 256 px); its maps mark part of each defect. Kept so its checkpoints and
    # measurements stay reproducible.
    return _edge_layout("edge-v2", seg_stem=4)


def _edge() -> ModelConfig:
    # edge-v2's denoiser with the segmentation net at 1/2 of the input side (128x128 for 256 px), trained
    # with the Dice term's weight lowered to 0.3 (RECOMMENDED_TRAINING): in the localisation study
    # (benchmarks/LOCALISATION.md, rounds 4 and 5, two seeds) image AUROC, pixel AP and AUPRO rose on both
    # shared datasets (Magnetic Tile's pixel AUROC fell by 0.014). Costs 1.28x the inference time of edge-v2.
    return _edge_layout("edge", seg_stem=2)


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


def _tiny_s2d() -> ModelConfig:
    # For tests: the `edge` layout (stem, pixel-shuffle head, BatchNorm; the segmentation net at 1/2
    # of the input side) at test size.
    return ModelConfig(
        preset="tiny-s2d",
        image_size=64,
        unet=UNetConfig(
            base_channels=32,
            channel_mult=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(8,),
            num_heads=2,
            groups=8,
            stem_factor=4,
            norm="batch",
            precondition_sigma_data=0.25,
        ),
        seg=SegConfig(encoder_channels=(32, 64, 64), stem_factor=2, head_prior=0.01),
        diffusion=DiffusionConfig(top_k=20),
    )


#: Inference paradigms of the detector (``DiffusionAD.detect``): the product's one-step mode and
#: the paper's iterative references.
MODES = ("one-step", "iterative", "ddim")

PRESETS = {"paper": _paper, "edge": _edge, "edge-v2": _edge_v2, "edge-v1": _edge_v1, "tiny": _tiny, "tiny-s2d": _tiny_s2d}


#: Training defaults per preset, where they differ from :class:`TrainConfig`'s (the paper's). The
#: `edge` recipe is the one measured in benchmarks/learning_curve.sh: a denoiser trained only at
#: the deployed timesteps, weight averaging, a warm-up + cosine schedule, higher learning rates
#: (the paper's 1e-5 barely moves the segmentation net in a few hundred steps) and the mixed
#: anomaly synthesis. `paper` keeps the paper's recipe.
_EDGE_RECIPE: dict[str, Any] = dict(
    timesteps="deployed", lr_schedule="cosine", warmup_steps=50, synthesis="mixed",
    lr_denoiser=1e-3, lr_segmenter=1e-3, batch_size=16, crop_size=128, dice_weight=0.3,
)
RECOMMENDED_TRAINING: dict[str, dict[str, Any]] = {
    "edge": _EDGE_RECIPE,
    # edge-v2's recipe as it was measured: the same with Dice at full weight (at the 4x stem, dropping the
    # Dice term lowered Magnetic Tile's AUPRO: benchmarks/LOCALISATION.md, round 1).
    "edge-v2": {**_EDGE_RECIPE, "dice_weight": 1.0},
    "tiny-s2d": dict(timesteps="deployed", lr_schedule="cosine", synthesis="mixed", dice_weight=0.3),
}


def same_networks(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether two configs build the same networks (weights of one load into the other), whatever
    their input size, preset name or inference settings."""
    return a.unet == b.unet and a.seg == b.seg


def preset_with_networks(config: ModelConfig) -> str | None:
    """The preset whose networks ``config`` builds, None when none does: names the layout of a
    checkpoint written when a preset meant something else (an `edge` checkpoint written before round 5
    of the localisation study is `edge-v2` now)."""
    return next((name for name, make in PRESETS.items() if same_networks(make(), config)), None)


def preset(name: str) -> ModelConfig:
    """Return a fresh :class:`ModelConfig` for a named preset."""
    try:
        return PRESETS[name]().validate()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


#: Where synthetic anomalies are made when training on crops (TrainConfig.anomaly_scale).
ANOMALY_SCALES = ("crop", "image")


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
    # Weight of a soft Dice term added to the paper's mask losses (0 = the paper's objective). Dice
    # scores the overlap of the predicted and true anomaly regions per sample, so it does not fade
    # when anomalous pixels are rare, as the focal and smooth-L1 terms' pixel means do.
    dice_weight: float = 0.0
    seed: int = 0
    # Fraction of train/good held out (never trained on) for thresholds and sanity checks.
    val_fraction: float = 0.1
    foreground: str = "auto"
    textures: str | None = None
    # Folder of user foreground masks (<stem>.png per training image); overrides the estimate.
    foreground_masks: str | None = None
    # Train on random crop_size x crop_size patches instead of whole images (None: whole images).
    crop_size: int | None = None
    # Where synthetic anomalies are made when training on crops: "crop" (on the patch: their sizes,
    # drawn relative to the canvas, shrink with the crop) or "image" (on the whole training image,
    # then the patch is cut around part of one: they keep the sizes they have on the whole image,
    # which is what the nets see at inference).
    anomaly_scale: str = "crop"
    checkpoint_every: int = 500
    # Also write the checkpoint whenever this many minutes (wall clock) have passed since the last
    # write (0: off): a power cut or the OOM killer then costs minutes, whatever the step rate.
    checkpoint_minutes: float = 5.0
    num_workers: int = 0
    amp: bool = True
    # "uniform": the paper's t_s ~ U{0..t_split-1}, t_b ~ U{t_split..T-1}. "deployed": only the
    # timesteps the exported graph uses, t_s and t_b, each +- t_jitter (a timestep-specialised
    # denoiser; the noise itself stays random).
    timesteps: str = "uniform"
    t_jitter: int = 20
    # Exponential moving average of the weights (0 = off); the averaged weights are what the
    # checkpoint's "model" holds, so eval and export use them. Warm-up: the effective decay is
    # min(ema_decay, (1 + n) / (10 + n)) at update n, so short runs are not dominated by the init.
    ema_decay: float = 0.999
    # "constant" (the paper) or "cosine": linear warm-up over warmup_steps, then cosine decay to
    # 5% over the run (its --steps, or its --minutes when that ends first).
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    # "auto", "fp32", "bf16" (CPU with native bf16, or CUDA) or "fp16" (CUDA); see hardware.py.
    precision: str = "auto"
    # Anomaly synthesis: "paper" (Perlin blobs filled with textures / shuffled self-augmentation)
    # or "mixed" (those plus cut-paste patches, thin scratches and cracks, intensity/colour shifts).
    synthesis: str = "paper"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def for_preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        """The preset's recommended recipe (:data:`RECOMMENDED_TRAINING`, what ``dae train --preset NAME``
        uses for options left unset), with ``overrides`` on top; validated."""
        return cls(**{**RECOMMENDED_TRAINING.get(name, {}), **overrides}).validate()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        try:
            return _build(cls, data)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid train config: {exc}") from None

    def validate(self) -> "TrainConfig":
        if self.steps < 1:
            raise ConfigError(f"--steps must be at least 1 (got {self.steps})")
        if self.batch_size < 2 or self.batch_size % 2:
            raise ConfigError(
                f"--batch-size must be an even number of at least 2, half clean and half synthetic "
                f"(got {self.batch_size})"
            )
        if self.checkpoint_every < 0:
            raise ConfigError(f"--checkpoint-every must be 0 (only at the end) or positive (got {self.checkpoint_every})")
        if not self.checkpoint_minutes >= 0:  # also NaN
            raise ConfigError(f"--checkpoint-minutes must be 0 (off) or positive (got {self.checkpoint_minutes})")
        if self.num_workers < 0:
            raise ConfigError(f"--workers must be 0 or positive (got {self.num_workers})")
        if self.timesteps not in ("uniform", "deployed"):
            raise ConfigError(f"--timesteps must be uniform or deployed (got {self.timesteps!r})")
        if not 0 <= self.t_jitter <= 100:
            raise ConfigError(f"--t-jitter must lie in [0, 100] (got {self.t_jitter})")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"--ema-decay must lie in [0, 1) (got {self.ema_decay})")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"--lr-schedule must be constant or cosine (got {self.lr_schedule!r})")
        if self.warmup_steps < 0:
            raise ConfigError(f"--warmup-steps must be 0 or positive (got {self.warmup_steps})")
        if self.synthesis not in ("paper", "mixed"):
            raise ConfigError(f"--synthesis must be paper or mixed (got {self.synthesis!r})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must lie in [0, 1) (got {self.val_fraction})")
        if self.foreground not in ("auto", "object", "texture"):
            raise ConfigError(f"--foreground must be auto, object or texture (got {self.foreground!r})")
        if self.lr_denoiser <= 0 or self.lr_segmenter <= 0:
            raise ConfigError("learning rates must be positive")
        if self.dice_weight < 0:
            raise ConfigError(f"--dice-weight must be 0 or positive (got {self.dice_weight})")
        if self.anomaly_scale not in ANOMALY_SCALES:
            raise ConfigError(f"--anomaly-scale must be {' or '.join(ANOMALY_SCALES)} (got {self.anomaly_scale!r})")
        return self
