"""Data: MVTec-layout datasets, the shared preprocessing, anomaly synthesis, built-in data."""

from .builtin import generate_dataset
from .mvtec import MVTecCategory, TestSample, load_test_sample, split_train_val
from .preprocess import preprocess, read_image, read_mask, resize_image, to_chw_float, to_rgb
from .synthesis import AnomalySynthesizer

__all__ = [
    "AnomalySynthesizer", "MVTecCategory", "TestSample", "generate_dataset", "load_test_sample",
    "preprocess", "read_image", "read_mask", "resize_image", "split_train_val", "to_chw_float", "to_rgb",
]
