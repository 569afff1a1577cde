"""``openlfr faces`` and ``openlfr compare``: faces in still images."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import app
from .common import Detector, engine_from_options


@app.command()
def faces(
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    detector: Annotated[Detector, typer.Option(help="retina (RetinaFace), hog (dlib HOG) or cnn (MMOD on our runtime).")] = Detector.retina,
    upsample: Annotated[Optional[int], typer.Option(min=0, max=4, help="Upsample the image N times before detecting (default: 0 for retina, 1 for hog and cnn).")] = None,
    min_face: Annotated[Optional[int], typer.Option(help="Ignore faces smaller than this (px).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per face per line.")] = False,
    flip: Annotated[bool, typer.Option(help="Average descriptors with the mirrored chip.")] = False,
) -> None:
    """Detect faces; print boxes, scores, landmarks, quality and 128-D descriptors."""
    from ..engine.images import ImageError, load_image

    engine = engine_from_options(detector, upsample, min_face, flip)
    failed = 0
    for path in images:
        try:
            rgb = load_image(path)
        except ImageError as e:
            typer.echo(f"error: {e}", err=True)
            failed += 1
            continue
        found = engine.analyze(rgb)
        if not found:
            typer.echo(f"{path}: no face found", err=True)
            continue
        if json_out:
            for f in found:
                sys.stdout.write(json.dumps(f.to_json(str(path))) + "\n")
            sys.stdout.flush()
        else:
            table = Table(title=f"{path} ({rgb.shape[1]}x{rgb.shape[0]}): {len(found)} face(s)")
            for col in ("box (l, t, r, b)", "score", "quality", "descriptor[:4]"):
                table.add_column(col)
            for f in found:
                table.add_row(
                    str(list(f.box)),
                    f"{f.score:.3f}",
                    f"{f.quality.score:.2f}",
                    " ".join(f"{v:+.3f}" for v in f.descriptor[:4]),
                )
            Console().print(table)
    if failed:
        raise typer.Exit(2)


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="First image (its largest face is used).")],
    b: Annotated[Path, typer.Argument(help="Second image.")],
    threshold: Annotated[float, typer.Option(help="Same person when the distance is below this.")] = 0.6,
    detector: Annotated[Detector, typer.Option()] = Detector.retina,
    upsample: Annotated[Optional[int], typer.Option(min=0, max=4)] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Distance between the largest faces of two images, and same/different at the threshold."""
    from ..engine.images import ImageError, load_image
    from ..engine.pipeline import distance

    engine = engine_from_options(detector, upsample, None, False)
    descs = []
    for path in (a, b):
        try:
            found = engine.analyze(load_image(path))
        except ImageError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2)
        if not found:
            typer.echo(f"error: {path}: no face found", err=True)
            raise typer.Exit(2)
        largest = max(found, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        descs.append(largest.descriptor)
    d = float(distance(descs[0], descs[1]))
    same = d < threshold
    if json_out:
        print(json.dumps({"a": str(a), "b": str(b), "distance": d, "threshold": threshold, "same": same}))
    else:
        verdict = "same person" if same else "different people"
        print(f"distance {d:.4f} ({verdict} at threshold {threshold})")
