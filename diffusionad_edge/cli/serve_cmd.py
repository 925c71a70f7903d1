"""``dae serve``: a bundle behind ``POST /predict`` for a line controller or an MES, with the live
page, ``/stats`` and ``/metrics`` of ``dae run --http``."""

from __future__ import annotations

import signal
import time
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
    max_image_mp: Optional[float] = typer.Option(None, "--max-image-mp", min=0.001, help="Largest image in megapixels, read "
                                                 "from its header before decoding (413 above, never decoded). Default: 256x the "
                                                 "model's input area, at least 16.8 (4096x4096)."),
) -> None:
    """Serve a bundle over HTTP: POST /predict takes an image file and answers JSON (score, normalised
    score, decision, thresholds, latency; ?overlay=1 adds the overlay as a base64 PNG). Ctrl-C or
    SIGTERM stops (requests in progress are answered first; exit code 143 for SIGTERM)."""
    import numpy as np

    from ..data.imagesize import max_pixels_from_mp
    from ..runtime.bundle import open_bundle
    from ..runtime.line.livestate import LiveState
    from ..runtime.line.serve import Predictor, model_info
    from ..runtime.line.webserver import backlog_for, start_server

    with open_bundle(model, backend) as bundle:
        bundle.override_thresholds(threshold, pixel_threshold)
        state = LiveState(model_info(bundle, Path(model).name))
        predictor = Predictor(bundle, state, max_waiting=max_waiting, max_pixels=max_pixels_from_mp(max_image_mp, bundle.input_hw))
        bundle.infer(np.zeros((1, 3, *bundle.input_hw), np.float32))  # activate the runner before the first request
        server = start_server(http, state, token=http_token, predictor=predictor, max_body=int(max_body_mb * (1 << 20)),
                              warn=lambda m: console.print(f"warning: {m}", markup=False, highlight=False),
                              backlog=backlog_for(max_waiting))
        console.print(f"serving {model} ({bundle.metadata.get('backend')}, {bundle.metadata.get('precision')}) at {server.url}: "
                      "POST /predict, GET /stats, /metrics; Ctrl-C to stop", markup=False, highlight=False, soft_wrap=True)
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (forwarded by the CLI)
            pass
        finally:
            server.close(drain_s=DRAIN_S)  # requests already accepted are answered, not cut
        stats = state.stats()
        console.print(f"served {stats['frames']} images: {stats['ok']} OK, {stats['ng']} NG", markup=False, highlight=False)
    if stop_signal() == signal.SIGTERM:
        raise typer.Exit(exit_code())


#: seconds a stopping server waits for the requests it is answering
DRAIN_S = 30.0
