"""``dae serve``: a bundle behind ``POST /predict`` for a line controller or an MES, with the live
page, ``/stats`` and ``/metrics`` of ``dae run --http``."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Optional

import typer

from ..interrupts import exit_code, stop_signal
from .common import console


def serve(
    model: Path = typer.Option(..., "--model", "-m", help="Bundle folder (any backend) or checkpoint (.pt, PyTorch)."),
    http: str = typer.Option(":8080", "--http", help="[HOST]:PORT to listen on (':8080' is localhost only; '0.0.0.0:8080' every interface)."),
    http_token: Optional[str] = typer.Option(None, "--http-token", envvar="DAE_HTTP_TOKEN", show_envvar=True,
                                             help="Every request must carry this token (Authorization: Bearer TOKEN, or ?token=)."),
    backend: Optional[str] = typer.Option(None, help="Override the bundle's backend."),
    threshold: Optional[float] = typer.Option(None, help="Override the bundle's image threshold."),
    pixel_threshold: Optional[float] = typer.Option(None, help="Override the bundle's pixel threshold."),
    max_body_mb: float = typer.Option(16.0, "--max-body-mb", min=0.001, help="Largest request body accepted (413 above)."),
    max_waiting: int = typer.Option(32, "--max-waiting", min=1, help="Requests in progress at once (decoding, waiting for "
                                    "the model or running); more get 503 with Retry-After. The accept backlog is sized from it."),
    review_dir: Path = typer.Option(Path("review"), "--review-dir", help="Where the page's review buttons save images "
                                    "(good/ and defect/, PNG + JSON sidecar; checked at start-up)."),
    review: bool = typer.Option(True, "--review/--no-review", help="The review buttons under the page's NG thumbnails."),
    max_image_mp: Optional[float] = typer.Option(None, "--max-image-mp", min=0.001, help="Largest image in megapixels, read "
                                                 "from its header before decoding (413 above, never decoded). Default: 256x the "
                                                 "model's input area, at least 16.8 (4096x4096)."),
) -> None:
    """Serve a bundle over HTTP: POST /predict takes an image file and answers JSON (score, normalised
    score, decision, thresholds, latency; ?overlay=1 adds the overlay as a base64 PNG). Ctrl-C or
    SIGTERM stops (requests in progress are answered first; exit code 143 for SIGTERM)."""
    from ..runtime.line.serve import serve_bundle

    stats = serve_bundle(model, http, http_token, backend, threshold, pixel_threshold, max_body=int(max_body_mb * (1 << 20)),
                         max_waiting=max_waiting, max_image_mp=max_image_mp, review_dir=review_dir if review else None,
                         say=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True),
                         warn=lambda m: console.print(f"warning: {m}", markup=False, highlight=False))
    console.print(f"served {stats['frames']} images: {stats['ok']} OK, {stats['ng']} NG", markup=False, highlight=False)
    if stop_signal() == signal.SIGTERM:
        raise typer.Exit(exit_code())

