"""Errors that mean "the user gave us something wrong", as opposed to bugs.

The CLI turns any :class:`DaeError` into one line on stderr and a non-zero exit code;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DaeError(Exception):
    """Base class for errors caused by user input, files or environment."""

    exit_code = 2


class DataError(DaeError):
    """A dataset folder, image or mask is missing, unreadable or inconsistent."""


class CheckpointError(DaeError):
    """A checkpoint is missing, corrupt or does not match the requested model."""


class ConfigError(DaeError):
    """An unknown preset, invalid option or inconsistent configuration."""


class MissingDependencyError(DaeError):
    """An optional backend (openvino, onnxruntime, tensorrt, ...) is not installed."""
