"""Atomic file writes (moved to :mod:`diffusionad_edge.files`; re-exported for old imports)."""

from ..files import atomic_write

__all__ = ["atomic_write"]
