"""Anomaly-detection metrics: image AUROC, pixel AUROC, pixel AP and AUPRO.

ROC and AP come from scikit-learn. AUPRO follows the standard (MVTec AD) definition: for each
threshold, the per-region overlap (PRO) is the mean over all ground-truth connected components
(8-connectivity, across all images) of the fraction of the component above the threshold; the
false-positive rate is measured on the normal pixels of all images. The PRO-vs-FPR curve is
integrated from FPR 0 to ``max_fpr`` (0.3) with linear interpolation at the limit and divided by
``max_fpr``, so a perfect detector scores 1.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from ..files import nan_to_none  # noqa: F401  (re-exported: it lived here)

#: the metrics of every evaluation, in table order
METRIC_NAMES = ("image_auroc", "pixel_auroc", "pixel_ap", "aupro")


def _safe(metric, labels: np.ndarray, scores: np.ndarray) -> float:
    """A metric that needs both classes present; NaN (not an exception) when one is missing."""
    labels = np.asarray(labels).ravel()
    if labels.min(initial=1) == labels.max(initial=0):
        return math.nan
    return float(metric(labels, np.asarray(scores, dtype=np.float64).ravel()))


def image_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of image scores against image labels (1 = anomalous)."""
    return _safe(roc_auc_score, labels, scores)


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """AUROC over all pixels of all images."""
    return _safe(roc_auc_score, masks.astype(np.uint8), maps)


def pixel_ap(masks: np.ndarray, maps: np.ndarray) -> float:
    """Average precision over all pixels of all images."""
    return _safe(average_precision_score, masks.astype(np.uint8), maps)


def aupro(masks: np.ndarray, maps: np.ndarray, max_fpr: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``max_fpr``.

    ``masks``: (N, H, W) binary ground truth; ``maps``: (N, H, W) anomaly scores.
    Exact: every distinct score is a threshold (no binning).
    """
    masks = np.asarray(masks).astype(bool)
    maps = np.asarray(maps, dtype=np.float64)
    if masks.shape != maps.shape:
        raise ValueError(f"masks {masks.shape} and maps {maps.shape} differ in shape")
    # Label connected components per image, then make labels unique across images.
    labels = np.zeros(masks.shape, dtype=np.int64)
    n_regions = 0
    structure = np.ones((3, 3), dtype=bool)
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=structure)
        labels[i] = np.where(lab > 0, lab + n_regions, 0)
        n_regions += n
    n_normal = int((~masks).sum())
    if n_regions == 0 or n_normal == 0:
        return math.nan

    flat_labels = labels.ravel()
    region_sizes = np.bincount(flat_labels, minlength=n_regions + 1).astype(np.float64)
    # Each pixel contributes to FPR (normal pixels) or to the PRO of its region.
    fpr_step = np.where(flat_labels == 0, 1.0 / n_normal, 0.0)
    pro_step = np.where(flat_labels > 0, 1.0 / (n_regions * region_sizes[flat_labels]), 0.0)

    order = np.argsort(-maps.ravel(), kind="stable")
    scores_sorted = maps.ravel()[order]
    fpr = np.cumsum(fpr_step[order])
    pro = np.cumsum(pro_step[order])
    # Keep only the last position of each run of equal scores: a threshold admits all ties.
    last_of_run = np.r_[scores_sorted[1:] != scores_sorted[:-1], True]
    fpr = np.r_[0.0, fpr[last_of_run]]
    pro = np.r_[0.0, pro[last_of_run]]
    fpr = np.clip(fpr, 0.0, 1.0)
    pro = np.clip(pro, 0.0, 1.0)

    # Integrate up to max_fpr, interpolating the curve at the limit.
    keep = fpr <= max_fpr
    x, y = fpr[keep], pro[keep]
    if x[-1] < max_fpr and keep.sum() < len(fpr):
        j = int(np.argmax(fpr > max_fpr))
        x0, x1, y0, y1 = fpr[j - 1], fpr[j], pro[j - 1], pro[j]
        y_lim = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
        x, y = np.r_[x, max_fpr], np.r_[y, y_lim]
    return float(np.trapezoid(y, x) / max_fpr)


def all_metrics(image_labels: np.ndarray, image_scores: np.ndarray, masks: np.ndarray, maps: np.ndarray) -> dict[str, float]:
    """The four metrics reported by ``dae eval``."""
    return {
        "image_auroc": image_auroc(image_labels, image_scores),
        "pixel_auroc": pixel_auroc(masks, maps),
        "pixel_ap": pixel_ap(masks, maps),
        "aupro": aupro(masks, maps),
    }
