"""``dae data``: the built-in synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from ..data.builtin import ALL_CATEGORIES, generate_dataset
from ..paths import check_output_dir
from .common import console
from .examples import epilog

app = typer.Typer(help="Built-in data: generate a synthetic MVTec-layout dataset.", no_args_is_help=True)


@app.command("generate", epilog=epilog("data generate"))
def generate(
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="Folder to write <out_dir>/<category>/{train,test,ground_truth}."),
    category: str = typer.Option("surface", help=f"Built-in category: {', '.join(ALL_CATEGORIES)} (1:2.5 images, 2-4 px scratches and cracks)."),
    n_train: int = typer.Option(120, min=1, help="Normal training images."),
    n_test_good: int = typer.Option(20, min=0, help="Normal test images."),
    n_test_per_defect: int = typer.Option(12, min=0, help="Test images per defect type (scratch, spot, hole; long-part: scratch, crack)."),
    size: int = typer.Option(256, min=32, help="Image side in pixels (long-part: the height; width 2.5x)."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same dataset."),
) -> None:
    """Generate textured surfaces with scratches, spots and holes, and their masks."""
    check_output_dir(out_dir, "dataset folder")
    path = generate_dataset(out_dir, category=category, n_train=n_train, n_test_good=n_test_good,
                            n_test_per_defect=n_test_per_defect, size=size, seed=seed)
    console.print(f"dataset written to {path}")
