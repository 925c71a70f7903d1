"""Denoising U-Net eps_theta(x_t, t) in the guided-diffusion style.

Residual blocks with the time embedding added after the first convolution, BigGAN-style
residual up/down-sampling blocks, multi-head self-attention at chosen resolutions, and
zero-initialised output convolutions so that every residual branch starts as the identity.

The network sees ``(x, t)`` only; the schedule lives in :mod:`.schedule`. For export with fixed
timesteps, :meth:`DenoisingUNet.forward_with_embedding` lets the caller pass a precomputed
(folded) time embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import UNetConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, shape (B, dim): [cos | sin] as in guided-diffusion."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _norm(channels: int, groups: int, kind: str = "group") -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    # Fall back to fewer groups for narrow layers so tiny presets still build.
    g = math.gcd(groups, channels)
    return nn.GroupNorm(g, channels)


class ResBlock(nn.Module):
    """Residual block with time embedding; ``resample`` in {None, "down", "up"} makes it BigGAN-style."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        groups: int,
        dropout: float = 0.0,
        resample: str | None = None,
        norm: str = "group",
    ):
        super().__init__()
        self.resample = resample
        self.in_norm = _norm(in_ch, groups, norm)
        self.in_conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.out_norm = _norm(out_ch, groups, norm)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.in_norm(x))
        # Resample after the activation and on the skip path too, as BigGAN residual blocks do.
        h = self.in_conv(self._resample(h))
        x = self._resample(x)
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.out_conv(self.dropout(F.silu(self.out_norm(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over spatial positions, residual with zero-initialised projection."""

    def __init__(self, channels: int, num_heads: int, groups: int, norm: str = "group"):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels cannot be split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = _norm(channels, groups, norm)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, hh, ww = x.shape
        qkv = self.qkv(self.norm(x).reshape(b, c, hh * ww))
        # (B, 3*C, N) -> 3 x (B, heads, N, C/heads)
        qkv = qkv.reshape(b, 3, self.num_heads, c // self.num_heads, hh * ww).permute(1, 0, 2, 4, 3)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        out = out.permute(0, 1, 3, 2).reshape(b, c, hh * ww)
        return x + self.proj(out).reshape(b, c, hh, ww)


class _Sequence(nn.ModuleList):
    """A list of blocks applied in order, each given the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb)
        return x


def precondition_coefficients(alphas_cumprod: torch.Tensor, sigma_data: float, mean: float = 0.0) -> torch.Tensor:
    """Per-timestep (c_in, a, b, shift), shape (T, 4), of the preconditioned parametrisation:
    u = x_t - shift, eps_hat = a * u + b * F(c_in * u).

    With x = x_t / sqrt(ab) = x0 + sigma eps, sigma^2 = (1 - ab) / ab, the data centred on ``mean``
    and EDM's c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2): x0_hat = mean + c_skip (x - mean) + c_out F and
    eps_hat = (x - x0_hat) / sigma.
    """
    ab = alphas_cumprod.double()
    sigma = ((1 - ab) / ab).sqrt()
    sd2 = sigma_data**2
    norm = (sigma**2 + sd2).sqrt()
    c_in = 1.0 / (norm * ab.sqrt())
    a = sigma / ((sigma**2 + sd2) * ab.sqrt())
    b = -sigma_data / norm
    shift = ab.sqrt() * mean
    return torch.stack([c_in, a, b, shift], dim=1).float()


class DenoisingUNet(nn.Module):
    """eps_theta(x_t, t): predicts the noise added to x_0 at timestep t."""

    def __init__(self, config: UNetConfig, image_size: int, alphas_cumprod: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        c = config
        self.preconditioned = c.precondition_sigma_data > 0
        if self.preconditioned:
            if alphas_cumprod is None:
                raise ValueError("a preconditioned denoiser needs the schedule's alphas_cumprod")
            # Derived from the schedule, so not saved: checkpoints stay interchangeable.
            self.register_buffer(
                "precond", precondition_coefficients(alphas_cumprod, c.precondition_sigma_data, c.precondition_mean),
                persistent=False,
            )
        base = c.base_channels
        emb_dim = base * c.time_embed_mult
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # With a space-to-depth stem the U-Net sees (in_channels * f^2) channels at size / f.
        self.stem_factor = f = c.stem_factor
        self.in_conv = nn.Conv2d(c.in_channels * f * f, base, 3, padding=1)

        def res(i: int, o: int, resample: str | None = None) -> ResBlock:
            return ResBlock(i, o, emb_dim, c.groups, c.dropout, resample, c.norm)

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, c.num_heads, c.groups, c.norm)

        self.down = nn.ModuleList()
        skips = [base]
        ch, res_px = base, image_size // f
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                blocks = [res(ch, base * mult)]
                ch = base * mult
                if res_px in c.attention_resolutions:
                    blocks.append(attn(ch))
                self.down.append(_Sequence(blocks))
                skips.append(ch)
            if level != len(c.channel_mult) - 1:
                self.down.append(_Sequence([res(ch, ch, "down")]))
                skips.append(ch)
                res_px //= 2

        self.middle = _Sequence([res(ch, ch), attn(ch), res(ch, ch)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks + 1):
                blocks = [res(ch + skips.pop(), base * mult)]
                ch = base * mult
                if res_px in c.attention_resolutions:
                    blocks.append(attn(ch))
                if level and i == c.num_res_blocks:
                    blocks.append(res(ch, ch, "up"))
                    res_px *= 2
                self.up.append(_Sequence(blocks))

        self.out = nn.Sequential(
            _norm(ch, c.groups, c.norm), nn.SiLU(), _zero(nn.Conv2d(ch, c.in_channels * f * f, 3, padding=1))
        )

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """The per-timestep embedding (B, emb_dim); constant for fixed t, so exports fold it."""
        return self.time_mlp(timestep_embedding(t, self.config.base_channels))

    def coefficients(self, t: torch.Tensor) -> torch.Tensor:
        """(B, 4) preconditioning coefficients (c_in, a, b, shift) of timesteps t; constant for fixed t,
        so exports fold them like the time embedding."""
        return self.precond.index_select(0, t.to(self.precond.device).long())

    def forward_with_embedding(self, x: torch.Tensor, emb: torch.Tensor, coef: torch.Tensor | None = None) -> torch.Tensor:
        """eps_hat from x_t and a precomputed time embedding (and, for a preconditioned network,
        the per-sample coefficients of :meth:`coefficients`)."""
        if not self.preconditioned:
            return self._network(x, emb)
        if coef is None:
            raise ValueError("a preconditioned denoiser needs its coefficients (DenoisingUNet.coefficients(t))")
        c_in, a, b, shift = (coef[:, i].to(x.dtype).view(-1, 1, 1, 1) for i in range(4))
        u = x - shift
        return a * u + b * self._network(c_in * u, emb)

    def _network(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        f = self.stem_factor
        h = self.in_conv(F.pixel_unshuffle(x, f) if f > 1 else x)
        hs = [h]
        for block in self.down:
            h = block(h, emb)
            hs.append(h)
        h = self.middle(h, emb)
        for block in self.up:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        out = self.out(h)
        return F.pixel_shuffle(out, f) if f > 1 else out

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        coef = self.coefficients(t) if self.preconditioned else None
        return self.forward_with_embedding(x, self.time_embedding(t), coef)
