"""Tiling: cut a full-resolution image into square tiles the network takes, and blend the tiles'
anomaly maps back into one map of the image.

Tile placement, along each axis of length L with tile T and overlap O (0 <= O < T): tiles start at
0, T - O, 2 (T - O), ... while they fit, and when the last one does not reach the end of the axis
one more tile is placed flush with it (start L - T). So every pixel is covered, no tile is padded,
and an axis that is not a multiple of the stride simply gets a last tile that overlaps its
neighbour by more than O. A tile larger than the image is an error (the image would need padding
the network never saw in training).

Blending, where tiles overlap: ``"mean"`` (default) averages the tile maps that cover a pixel (seams
of tiles, where each network sees less context, are smoothed); ``"max"`` takes their maximum (a
defect seen by any tile is kept at full strength). Both reproduce a map exactly when the tiles are
cut from it (accumulation in float64: sums of a few float32 values and their division by the count
are exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError

BLENDS = ("mean", "max")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles along one axis (see the module docstring)."""
    check_tiling(tile, overlap)
    if tile > length:
        raise DataError(f"tile {tile} is larger than the image side {length}: use a smaller --tile (or no tiling)")
    stride = tile - overlap
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def check_tiling(tile: int, overlap: int, blend: str = "mean") -> None:
    """:class:`ConfigError` for a tile size, overlap or blend that cannot work."""
    if not isinstance(tile, (int, np.integer)) or tile < 1:
        raise ConfigError(f"--tile must be a positive integer (got {tile!r})")
    if not isinstance(overlap, (int, np.integer)) or not 0 <= overlap < tile:
        raise ConfigError(f"--tile-overlap must lie in [0, tile) = [0, {tile}) (got {overlap!r})")
    if blend not in BLENDS:
        raise ConfigError(f"tile blend must be one of {', '.join(BLENDS)} (got {blend!r})")


@dataclass(frozen=True)
class TileGrid:
    """The tiles of an image of ``height`` x ``width``: :meth:`split` cuts them, :meth:`merge` blends
    per-tile maps back. Tiles are ordered row by row (top to bottom, left to right)."""

    height: int
    width: int
    tile: int
    overlap: int = 0

    def __post_init__(self) -> None:
        if self.tile > self.height or self.tile > self.width:
            raise DataError(f"tile {self.tile} is larger than the image ({self.width}x{self.height}, WxH): "
                            "use a smaller --tile, or no tiling")

    @property
    def origins(self) -> list[tuple[int, int]]:
        """(y, x) of every tile's top-left corner, row by row."""
        ys = tile_starts(self.height, self.tile, self.overlap)
        xs = tile_starts(self.width, self.tile, self.overlap)
        return [(y, x) for y in ys for x in xs]

    def __len__(self) -> int:
        return len(self.origins)

    def split(self, image: np.ndarray) -> np.ndarray:
        """An image (H, W[, C]) -> its tiles (N, T, T[, C]), a copy."""
        if image.shape[:2] != (self.height, self.width):
            raise ValueError(f"image of shape {image.shape[:2]} does not match the grid's {self.height}x{self.width}")
        t = self.tile
        return np.stack([image[y : y + t, x : x + t] for y, x in self.origins])

    def merge(self, tiles: np.ndarray, blend: str = "mean") -> np.ndarray:
        """Per-tile maps (N, T, T) -> one map (H, W) float32, overlaps blended by ``blend``."""
        check_tiling(self.tile, self.overlap, blend)
        origins, t = self.origins, self.tile
        if tiles.shape != (len(origins), t, t):
            raise ValueError(f"expected {len(origins)} tile maps of {t}x{t}, got shape {tiles.shape}")
        if blend == "max":
            out = np.full((self.height, self.width), -np.inf, np.float64)
            for m, (y, x) in zip(tiles, origins):
                np.maximum(out[y : y + t, x : x + t], m, out=out[y : y + t, x : x + t])
            return out.astype(np.float32)
        total = np.zeros((self.height, self.width), np.float64)
        count = np.zeros((self.height, self.width), np.int32)
        for m, (y, x) in zip(tiles, origins):
            total[y : y + t, x : x + t] += m
            count[y : y + t, x : x + t] += 1
        return (total / count).astype(np.float32)
