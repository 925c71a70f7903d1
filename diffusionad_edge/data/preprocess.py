"""The one preprocessing path shared by training and every runtime.

Training, evaluation, export calibration and all deployment runtimes call the
functions here, so a model always sees pixels prepared the same way:

    file -> read_image (RGB uint8 HxWx3) -> resize_image (size x size)
         -> to_chw_float (float32 3xHxW in [0, 1], no mean/std)

Camera frames enter through :func:`to_rgb` instead of :func:`read_image`.
"""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np

from diffusionad_edge.errors import DataError

from .imagesize import check_image_size

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    """True for a visible regular file whose extension is in IMAGE_EXTENSIONS."""
    # Names starting with "." are skipped: macOS leaves "._000.png" resource
    # forks next to every image when a dataset is copied from a Mac.
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def find_images(source: str | Path) -> list[Path]:
    """The image files of a folder (recursive), a single image file, or a glob pattern, sorted.
    Hidden files (macOS ``._`` resource forks) are skipped; nothing found gives an empty list."""
    p = Path(source)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if is_image_file(f))
    if p.is_file():
        return [p] if p.suffix.lower() in IMAGE_EXTENSIONS else []
    if any(c in str(source) for c in "*?["):
        return sorted(f for f in (Path(m) for m in glob.glob(str(source), recursive=True)) if is_image_file(f))
    return []


def _decode(path: str | Path, what: str, max_pixels: int | None = None) -> np.ndarray:
    """Decode a file with IMREAD_UNCHANGED, raising DataError naming the path. With ``max_pixels``
    the size is read from the header first and a larger image is refused undecoded
    (:func:`~.imagesize.check_image_size`)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"cannot read {what}: {p} (file not found)")
    if max_pixels is not None:
        check_image_size(p, max_pixels, str(p))
    try:
        # imdecode on the raw bytes behaves like cv2.imread(IMREAD_UNCHANGED)
        # but also works for non-ASCII paths on Windows, where imread fails.
        raw = np.fromfile(str(p), dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read {what}: {p} ({exc.strerror or exc})") from exc
    if raw.size == 0:
        raise DataError(f"cannot read {what}: {p} (empty file)")
    img = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise DataError(f"cannot read {what}: {p} (not a supported image or corrupt)")
    return img


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3.

    Handles 8/16-bit, grayscale, gray+alpha, BGR and BGRA files (alpha is dropped).
    Raises DataError("cannot read image: <path> (...)") for missing, unreadable
    or corrupt files; with ``max_pixels``, :class:`~.imagesize.ImageTooLarge` for an image whose
    header announces more pixels (it is not decoded).
    """
    img = _decode(path, "image", max_pixels)
    try:
        return to_rgb(img, bgr=True)
    except DataError as exc:
        raise DataError(f"cannot read image: {path} ({exc})") from exc


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    """Scale a frame of any supported dtype to uint8, keeping its shape."""
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        # Fixed scaling (65535 / 257 = 255), never per-image stretching: every image of
        # a dataset must map to the same gray levels. 12-bit data in a 16-bit file
        # therefore comes out dark, consistently.
        return np.round(frame.astype(np.float32) / 257.0).astype(np.uint8)
    if frame.dtype == np.bool_:
        return frame.astype(np.uint8) * 255
    if np.issubdtype(frame.dtype, np.floating):
        f = np.nan_to_num(frame.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.round(np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise DataError(f"unsupported pixel type {frame.dtype} (expected uint8, uint16 or float in [0, 1])")


def to_rgb(frame: np.ndarray, bgr: bool = True) -> np.ndarray:
    """Convert a frame to RGB uint8 HxWx3.

    Accepts HxW gray, HxWx1, HxWx2 (gray+alpha), HxWx3 (BGR if ``bgr`` else RGB)
    and HxWx4 (BGRA if ``bgr`` else RGBA); dtypes uint8, uint16 (scaled) and
    float in [0, 1]. Alpha is dropped, not composited. Raises DataError on an
    unsupported shape or dtype.
    """
    if not isinstance(frame, np.ndarray):
        raise DataError(f"expected an image array, got {type(frame).__name__}")
    if frame.ndim == 3 and frame.shape[2] in (1, 2):
        frame = frame[:, :, 0]  # gray (+alpha): keep the gray plane
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise DataError(f"unsupported image shape {frame.shape} (expected HxW, HxWx1, HxWx3 or HxWx4)")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"empty image of shape {frame.shape}")
    img = _to_uint8(frame)
    if img.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_GRAY2RGB)
    img = img[:, :, :3]
    if bgr:
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def to_bgr(frame: np.ndarray, bgr: bool = True) -> np.ndarray:
    """A frame as BGR uint8 HxWx3 for drawing and writing with OpenCV (a BGR uint8 frame as it is)."""
    if bgr and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    return np.ascontiguousarray(to_rgb(frame, bgr=bgr)[:, :, ::-1])


def resize_to(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize to height x width (INTER_AREA if no axis grows, else INTER_LINEAR)."""
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img.copy()
    # INTER_AREA only when no axis grows: on an enlarged axis it degenerates to
    # nearest-neighbour blocks. The choice depends only on the two shapes, so
    # the same image always gets the same interpolation.
    interp = cv2.INTER_AREA if (h >= height and w >= width) else cv2.INTER_LINEAR
    out = cv2.resize(img, (width, height), interpolation=interp)
    if img.ndim == 3 and out.ndim == 2:  # cv2 drops a trailing channel of 1
        out = out[:, :, None]
    return out


def _hw(size: int | tuple[int, int], what: str = "image") -> tuple[int, int]:
    """An input size, ``S`` (square) or ``(H, W)``, as (H, W) of positive integers."""
    hw = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
    if len(hw) != 2 or any(int(v) != v or v < 1 for v in hw):
        raise DataError(f"{what} size must be a positive integer or (height, width), got {size!r}")
    return int(hw[0]), int(hw[1])


def resize_image(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an image to size x size, or to (height, width) for a rectangular input.

    INTER_AREA when shrinking (no axis grows), INTER_LINEAR otherwise.
    """
    return resize_to(img, *_hw(size))


def to_chw_float(img_uint8: np.ndarray) -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 (3, H, W) = img / 255, in [0, 1] (no mean/std)."""
    if img_uint8.dtype != np.uint8 or img_uint8.ndim != 3 or img_uint8.shape[2] != 3:
        raise DataError(f"expected an RGB uint8 HxWx3 image, got {img_uint8.dtype} {img_uint8.shape}")
    chw = np.ascontiguousarray(img_uint8.transpose(2, 0, 1), dtype=np.float32)
    chw *= 1.0 / 255.0
    return chw


def preprocess(img_rgb_uint8: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """RGB uint8 HxWx3 of any size -> model input float32 (3, size, size) in [0, 1] (or
    (3, height, width) for a rectangular ``size``)."""
    return to_chw_float(resize_image(img_rgb_uint8, size))


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a binary HxW mask to size x size (or (height, width)) with INTER_NEAREST (stays binary)."""
    h, w = _hw(size, "mask")
    if mask.shape[:2] == (h, w):
        return mask.astype(np.float32, copy=True)
    out = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    return out.astype(np.float32)


def read_mask(
    path: str | Path,
    size: int | tuple[int, int] | None = None,
    expected_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read a ground-truth mask as float32 HxW in {0, 1}.

    A pixel is defect when its gray value is > 127; a uint8 file whose values are
    only 0 and 1 is read as a label map (1 = defect). With ``expected_hw`` the
    mask's original (H, W) must match it, else DataError. With ``size`` the mask
    is resized to size x size with INTER_NEAREST.
    """
    raw = _decode(path, "mask")
    try:
        rgb = to_rgb(raw, bgr=True)
    except DataError as exc:
        raise DataError(f"cannot read mask: {path} ({exc})") from exc
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if raw.dtype == np.uint8 and gray.max() == 1:
        # 0/1 label maps would otherwise silently read as empty masks.
        mask = gray > 0
    else:
        mask = gray > 127
    hw = tuple(mask.shape)
    if expected_hw is not None and hw != tuple(expected_hw[:2]):
        raise DataError(
            f"mask size {hw[0]}x{hw[1]} differs from image size "
            f"{expected_hw[0]}x{expected_hw[1]}: {path}"
        )
    out = mask.astype(np.float32)
    if size is not None:
        out = resize_mask(out, size)
    return out
