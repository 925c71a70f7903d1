"""How a long library job (training, evaluation, the demo) shows its progress without knowing who
draws it.

The caller passes ``bars``: a function that opens a progress bar as a context manager,
``bars(label, total, with_info)``, and yields its ``update(completed, info=None)`` (``info``: a short
free text beside the bar, e.g. the loss; ``with_info=False``: the job never sets one). ``dae`` passes
rich bars on stderr (``cli/common.py``); a Python caller passes its own, or nothing
(:func:`no_bar`: nothing is drawn).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Callable, Iterator, Optional, Protocol

#: ``update(completed, info=None)``: the bar's position and, when given, its free text
Update = Callable[..., None]


class Bars(Protocol):
    """Opens one progress bar of ``total`` steps named ``label``; yields its :data:`Update`."""

    def __call__(self, label: str, total: int, with_info: bool = True) -> AbstractContextManager[Update]: ...


def _ignore(completed: float, info: Optional[str] = None) -> None:
    return None


@contextmanager
def no_bar(label: str, total: int, with_info: bool = True) -> Iterator[Update]:
    """The bars of a caller that shows none: every update is ignored."""
    yield _ignore
