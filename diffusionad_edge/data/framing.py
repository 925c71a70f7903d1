"""How a camera frame becomes network inputs, and how their anomaly maps become one map of the frame.

One :class:`Preprocessing` is stored in every checkpoint (``payload["preprocessing"]``) and every
bundle (``metadata["preprocessing"]``), and training, evaluation, the export checks, ``dae predict``
and ``dae run`` all go through it::

    frame (H, W) --ROI crop--> region (h, w) --+--> resize to the input (height x width): 1 input
                                               +--> tiles of tile x tile at full resolution: N inputs
    maps --> region map (resized back, or tiles blended) --> placed into the frame (0 outside the ROI)

* no ROI, no tiles: the classic path (the frame is resized to the input size; square or not);
* ``roi``: the frame is cropped first (:mod:`.roi`);
* ``tile``: the region is cut into tiles at full resolution (:mod:`.tiling`), all tiles of a frame
  run as one batch, the tile maps are blended back and the image score is the mean of the ``top_k``
  highest pixels of the blended map (the graph's own score covers one tile only).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .preprocess import resize_to, to_chw_float
from .roi import Roi
from .tiling import TileGrid, check_tiling


def parse_input_size(text: str | int) -> tuple[int, int]:
    """``"256"`` -> (256, 256); ``"256x640"`` (height x width) -> (256, 640); ConfigError otherwise."""
    parts = str(text).lower().replace(" ", "").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise ConfigError(f"--input-size must be N or HxW (height x width), e.g. 256 or 256x640 (got {text!r})")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


@dataclass(frozen=True)
class FrameLayout:
    """Where one frame's inputs came from: what :meth:`Preprocessing.region_map` needs to undo it."""

    frame_hw: tuple[int, int]
    region_hw: tuple[int, int]
    grid: TileGrid | None = None

    @property
    def count(self) -> int:
        """Network inputs of this frame."""
        return len(self.grid) if self.grid is not None else 1


@dataclass(frozen=True)
class Preprocessing:
    """Network input size (``height`` x ``width``), optional ROI, optional tiling."""

    height: int
    width: int
    roi: Roi | None = None
    tile: int | None = None
    overlap: int = 0
    blend: str = "mean"
    #: image score of a tiled frame: mean of the top_k pixels of the blended map
    top_k: int = 50

    def __post_init__(self) -> None:
        if self.tile is not None:
            check_tiling(self.tile, self.overlap, self.blend)
            if (self.height, self.width) != (self.tile, self.tile):
                raise ConfigError(f"a tiled model takes tile x tile inputs ({self.tile}x{self.tile}), "
                                  f"not {self.height}x{self.width}")

    # -- construction and storage ---------------------------------------------------------------
    @classmethod
    def plain(cls, hw: int | tuple[int, int], top_k: int = 50) -> "Preprocessing":
        """The classic path: the whole frame resized to ``hw`` (an int for a square)."""
        h, w = (hw, hw) if isinstance(hw, (int, np.integer)) else hw
        return cls(int(h), int(w), top_k=top_k)

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def is_plain(self) -> bool:
        """No ROI and no tiles: exactly the path of models made before ROIs and tiles existed."""
        return self.roi is None and self.tile is None

    def with_roi(self, roi: Roi | None) -> "Preprocessing":
        return dataclasses.replace(self, roi=roi)

    def to_dict(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, "roi": self.roi.to_dict() if self.roi else None,
                "tile": self.tile, "overlap": self.overlap, "blend": self.blend, "top_k": self.top_k,
                "resize": "area when shrinking, bilinear when enlarging (no padding, aspect not kept)"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocessing":
        try:
            roi = data.get("roi")
            tile = data.get("tile")
            return cls(int(data["height"]), int(data["width"]), Roi.from_dict(roi) if roi else None,
                       int(tile) if tile is not None else None, int(data.get("overlap", 0)),
                       str(data.get("blend", "mean")), int(data.get("top_k", 50)))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(f"invalid preprocessing record {data!r}") from None

    def describe(self) -> str:
        parts = [f"input {self.height}x{self.width} (HxW)"]
        if self.roi is not None:
            parts.append(f"ROI x,y,w,h {self.roi}")
        if self.tile is not None:
            parts.append(f"tiles {self.tile} px, overlap {self.overlap}, {self.blend} blend")
        return ", ".join(parts)

    # -- frame -> inputs ------------------------------------------------------------------------
    def region(self, image: np.ndarray) -> np.ndarray:
        """The ROI of an image (H, W[, C]), or the whole image."""
        return self.roi.crop(image) if self.roi is not None else image

    def grid(self, region_hw: tuple[int, int]) -> TileGrid:
        """The tiles of a region of this size (:class:`DataError` when a tile does not fit)."""
        if self.tile is None:
            raise ValueError("not a tiled preprocessing")
        try:
            return TileGrid(int(region_hw[0]), int(region_hw[1]), self.tile, self.overlap)
        except DataError as exc:
            where = f" (the region of interest {self.roi})" if self.roi is not None else ""
            raise DataError(f"{exc}{where}") from None

    def network_images(self, rgb: np.ndarray) -> tuple[np.ndarray, FrameLayout]:
        """RGB uint8 frame (H, W, 3) -> network images (N, h, w, 3) uint8 and the frame's layout."""
        region = self.region(rgb)
        rh, rw = region.shape[:2]
        if self.tile is not None:
            grid = self.grid((rh, rw))
            return grid.split(region), FrameLayout(rgb.shape[:2], (rh, rw), grid)
        return resize_to(region, self.height, self.width)[None], FrameLayout(rgb.shape[:2], (rh, rw))

    def inputs(self, rgb: np.ndarray) -> tuple[np.ndarray, FrameLayout]:
        """RGB uint8 frame -> the network batch (N, 3, h, w) float32 in [0, 1] and the layout."""
        images, layout = self.network_images(rgb)
        return np.stack([to_chw_float(np.ascontiguousarray(i)) for i in images]), layout

    # -- maps -> frame --------------------------------------------------------------------------
    def region_map(self, maps: np.ndarray, layout: FrameLayout, hw: tuple[int, int] | None = None) -> np.ndarray:
        """This frame's network maps (N, h, w) -> one map of the region (or of ``hw`` when given)."""
        if layout.grid is not None:
            out = layout.grid.merge(np.asarray(maps, np.float32), self.blend)
        else:
            out = np.asarray(maps[0], np.float32)
        target = hw or layout.region_hw
        if out.shape != tuple(target):
            out = resize_to(out, int(target[0]), int(target[1]))
        return out

    def frame_map(self, region_map: np.ndarray, layout: FrameLayout) -> np.ndarray:
        """A region map (at region size) placed into a map of the whole frame (0 outside the ROI)."""
        if self.roi is None:
            return region_map
        return self.roi.place(region_map, layout.frame_hw)

    def score(self, region_map: np.ndarray) -> float:
        """Image score of a blended map: the mean of its ``top_k`` highest pixels."""
        flat = np.asarray(region_map, np.float32).ravel()
        k = min(self.top_k, flat.size)
        return float(np.partition(flat, flat.size - k)[flat.size - k :].mean())

    # -- training -------------------------------------------------------------------------------
    def training_image(self, rgb: np.ndarray) -> np.ndarray:
        """What training keeps in memory for one image: the region resized to the input size, or
        (tiled) the region at full resolution, where random tile-sized crops are drawn from."""
        region = self.region(rgb)
        if self.tile is not None:
            self.grid(region.shape[:2])  # a tile larger than the region is refused here, before training
            return np.ascontiguousarray(region)
        return resize_to(region, self.height, self.width)

    def training_mask(self, mask: np.ndarray) -> np.ndarray:
        """A full-frame mask (H, W) brought to :meth:`training_image`'s geometry (nearest neighbour)."""
        import cv2

        region = self.region(mask).astype(np.float32)
        if self.tile is not None:
            return np.ascontiguousarray(region)
        return cv2.resize(region, (self.width, self.height), interpolation=cv2.INTER_NEAREST)

    def view(self, training_image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One network-sized view of a training image: a random tile of a tiled one, else itself."""
        if self.tile is None:
            return training_image
        t = self.tile
        h, w = training_image.shape[:2]
        y, x = int(rng.integers(h - t + 1)), int(rng.integers(w - t + 1))
        return np.ascontiguousarray(training_image[y : y + t, x : x + t])


def preprocessing_of(model_config: Any, payload: dict[str, Any] | None = None) -> Preprocessing:
    """A checkpoint's preprocessing: its record, or (checkpoints made before ROIs and tiles) the
    plain resize to the model's input size."""
    record = (payload or {}).get("preprocessing")
    if record:
        return Preprocessing.from_dict(record)
    return Preprocessing.plain(model_config.input_hw, model_config.diffusion.top_k)


def as_preprocessing(size_or_prep: "int | tuple[int, int] | Preprocessing", top_k: int = 50) -> Preprocessing:
    """A :class:`Preprocessing`, or the plain one of an input size (``S`` or ``(H, W)``)."""
    if isinstance(size_or_prep, Preprocessing):
        return size_or_prep
    return Preprocessing.plain(size_or_prep, top_k)


def predict_frames(prep: Preprocessing, predict: Any, frames: list[np.ndarray],
                   hw: tuple[int, int] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Score RGB uint8 frames through ``prep`` with ``predict`` (a network batch (B, 3, h, w) ->
    (maps (B, h, w), scores (B,))), all inputs of the given frames in one call (a tiled frame's
    tiles are one batch). Returns the region maps (at region size, or ``hw``) and the image scores:
    the network's own score for a resized frame, the top-k of the blended map for a tiled one."""
    batches, layouts = zip(*(prep.inputs(f) for f in frames)) if frames else ((), ())
    if not frames:
        return [], np.zeros(0, np.float32)
    maps, scores = predict(np.concatenate(batches))
    maps = np.asarray(maps, np.float32)
    maps = maps[:, 0] if maps.ndim == 4 else maps
    out_maps, out_scores, start = [], [], 0
    for layout in layouts:
        part = maps[start : start + layout.count]
        region = prep.region_map(part, layout, hw)
        if layout.grid is not None:
            # the blended map at full region resolution decides the score, whatever ``hw`` is
            full = region if hw is None or tuple(hw) == layout.region_hw else prep.region_map(part, layout)
            out_scores.append(prep.score(full))
        else:
            out_scores.append(float(np.asarray(scores)[start]))
        out_maps.append(region)
        start += layout.count
    return out_maps, np.asarray(out_scores, np.float32)
