"""Segmentation sub-network: a DRAEM-style U-Net on concat(input, reconstruction).

Encoder: blocks of (conv-BN-ReLU) x 2 with max-pooling between them. Decoder: per stage a
bilinear x2 upsample and conv-BN-ReLU, concatenation with the skip, then (conv-BN-ReLU) x 2. Returns logits; the detector applies the sigmoid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import SegConfig


def _conv_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class _DoubleConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(*_conv_bn_relu(in_ch, out_ch), *_conv_bn_relu(out_ch, out_ch))


class _UpStage(nn.Module):
    def __init__(self, deep_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.up_conv = nn.Sequential(*_conv_bn_relu(deep_ch, out_ch))
        self.fuse = _DoubleConv(out_ch + skip_ch, out_ch)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(deep, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([self.up_conv(up), skip], dim=1))


class SegmentationUNet(nn.Module):
    """M_hat logits = seg(concat(x0, x0_g)); input image first, 6 channels in."""

    def __init__(self, config: SegConfig):
        super().__init__()
        chans = config.encoder_channels
        # Space-to-depth stem / pixel-shuffle head (stem_factor f > 1): the net works at size / f on
        # f^2 x more input channels and predicts f x f sub-pixel logits per position.
        self.stem_factor = f = config.stem_factor
        self.encoders = nn.ModuleList()
        prev = config.in_channels * f * f
        for ch in chans:
            self.encoders.append(_DoubleConv(prev, ch))
            prev = ch
        # Each stage narrows to the width of the encoder level above its skip (as DRAEM does), so
        # the decoder is lighter than a mirror of the encoder.
        self.decoders = nn.ModuleList()
        deep = chans[-1]
        for i in reversed(range(len(chans) - 1)):
            out = chans[max(i - 1, 0)]
            self.decoders.append(_UpStage(deep, chans[i], out))
            deep = out
        self.head = nn.Conv2d(chans[0], f * f, 3, padding=1)
        if config.head_prior > 0:
            nn.init.constant_(self.head.bias, math.log(config.head_prior / (1.0 - config.head_prior)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stem_factor
        if f > 1:
            x = F.pixel_unshuffle(x, f)
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for dec in self.decoders:
            x = dec(x, skips.pop())
        logits = self.head(x)
        return F.pixel_shuffle(logits, f) if f > 1 else logits
