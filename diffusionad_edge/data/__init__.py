"""Data: MVTec-layout datasets, the shared preprocessing, anomaly synthesis and built-in data."""

from .augment import procedural_texture, random_augment, strip_shuffle
from .builtin import DEFECT_TYPES, KNOWN_CATEGORIES, generate_dataset
from .foreground import FOREGROUND_MODES, estimate_foreground, foreground_for
from .mvtec import MVTecCategory, TestSample, load_test_sample, split_train_val
from .perlin import perlin_mask, perlin_noise
from .preprocess import (
    IMAGE_EXTENSIONS,
    preprocess,
    read_image,
    read_mask,
    resize_image,
    resize_mask,
    to_chw_float,
    to_rgb,
)
from .synthesis import AnomalySynthesizer

__all__ = [
    "AnomalySynthesizer",
    "DEFECT_TYPES",
    "FOREGROUND_MODES",
    "IMAGE_EXTENSIONS",
    "KNOWN_CATEGORIES",
    "MVTecCategory",
    "TestSample",
    "estimate_foreground",
    "foreground_for",
    "generate_dataset",
    "load_test_sample",
    "perlin_mask",
    "perlin_noise",
    "preprocess",
    "procedural_texture",
    "random_augment",
    "read_image",
    "read_mask",
    "resize_image",
    "resize_mask",
    "split_train_val",
    "strip_shuffle",
    "to_chw_float",
    "to_rgb",
]
