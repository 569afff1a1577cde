"""``openlfr bench``: speed measurements against dlib in the same process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app

bench_app = typer.Typer(help="Speed measurements (ratios against dlib, same run).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("embed")
def embed(
    images: Annotated[Optional[list[Path]], typer.Option("--image", help="Images to take chips from (default: bundled sample photos).")] = None,
    runtime: Annotated[str, typer.Option(help="onnx (default) or torch (extra).")] = "onnx",
    precision: Annotated[str, typer.Option(help="fp32, or bf16/fp16 with the torch runtime.")] = "fp32",
    chips: Annotated[int, typer.Option(min=1, help="Chips per batch for our runtime.")] = 64,
    seconds: Annotated[float, typer.Option(min=0.1, help="Minimum timing per runtime.")] = 3.0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Faces per second of dlib and of our runtime on the same real chips, and the ratio."""
    from ..benchmarks.embed import bench_embed, real_chips

    result = bench_embed(real_chips(images, chips), seconds=seconds, runtimes=(runtime,), precision=precision)
    if json_out:
        print(json.dumps(result))
    else:
        print(
            f"dlib: {result['dlib_faces_per_s']:.1f} faces/s; {result['runtime']}: {result['faces_per_s']:.1f} faces/s; "
            f"ratio {result['ratio']:.1f}x (max |diff| {result['max_abs_diff_vs_dlib']:.1e}) on {result['machine']}"
        )
