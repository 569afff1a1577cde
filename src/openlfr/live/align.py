"""Landmarks, chip and quality of a detection, on dlib's native code when available.

The engine's ``FaceEngine.align`` reproduces dlib's 5-point shape predictor and
``get_face_chip`` in numpy (pixel for pixel, tested there). A live camera aligns a face on
most detection frames, so here the same two steps run on dlib's own C++ when ``dlib`` imports
(about 4x faster; the landmarks and chips are identical: ``tests/test_live_tracking.py`` checks
it), and fall back to the engine otherwise. Quality is the engine's (``engine.quality.assess``).

Small faces: a 150x150 chip cut from a face 30 pixels wide is a 5x bilinear enlargement, and
its descriptor suffers. Faces narrower than ``small_face`` px are first cut out with a margin
and enlarged with bicubic interpolation (to about ``enlarge_to`` px), and the landmarks and chip
are taken there; landmarks are mapped back, so quality (size) still sees the true face size.
On hamilton's 30-pixel pianist this brings the distance to his reference photo down by about 0.02-0.04.

With ``second`` set (the second model, SFace: the run sets it when its scoring fuses), a face with
RetinaFace's landmarks also gets the second model's crop (``Face.second_crop``), aligned from the
detector's landmarks on the frame (for a small face, the enlarged re-detection's, mapped back).

RetinaFace's detections (the default) carry 5 landmarks of their own: the chip is aligned on
the mean of them and dlib's 5-point model's from the box (``retina.fused_points``, as the
engine's default ``landmarks="fused"``; ``"detector"``: RetinaFace's alone). dlib's points are
its whole-pixel ones here (native, about 1 ms a face, where the engine's sub-pixel ones cost
several ms in numpy: 99.20% against 99.30% on LFW folds 1-5), and a face under
``small_face`` px is first re-detected on its neighbourhood enlarged to ~100 px
(``retina.enlarged``), whose own landmarks place the chip better still (the pianist: 0.54 mean
distance against 0.61).
"""

from __future__ import annotations

import numpy as np

from ..engine.quality import assess


class Aligner:
    def __init__(self, engine, native: bool = True, small_face: int = 40, enlarge_to: int = 90):
        self.engine = engine
        self.small_face = small_face
        self.enlarge_to = enlarge_to
        self.second = None  # the second model (engine.sface.SFaceModel) when its crops are wanted
        self._redetector = None
        self._sp = None
        if native:
            try:
                import dlib

                from ..engine.models import SHAPE5, model_path

                self._dlib = dlib
                self._sp = dlib.shape_predictor(str(model_path(SHAPE5)))
            except Exception:  # no dlib, or no model file: the engine's own code
                self._sp = None

    @property
    def native(self) -> bool:
        return self._sp is not None

    def align(self, rgb: np.ndarray, det):
        """A ``Face`` (box, score, landmarks, chip, quality; no descriptor) for one Detection."""
        from ..engine.pipeline import Face

        if det.landmarks is not None and getattr(self.engine, "landmarks", "fused") != "dlib":
            return self._from_detector(rgb, det)
        if self._sp is None:
            return self.engine.align(rgb, [det])[0]

        l, t, r, b = (int(v) for v in det.box)
        width = r - l + 1
        if self.small_face and width < self.small_face:
            import cv2

            f = min(4.0, self.enlarge_to / max(width, 1))
            h, w = rgb.shape[:2]
            cl, ct = max(0, l - width), max(0, t - width)
            cr, cb = min(w, r + width + 1), min(h, b + width + 1)
            big = cv2.resize(rgb[ct:cb, cl:cr], None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC)
            box = ((l - cl) * f, (t - ct) * f, (r + 1 - cl) * f - 1, (b + 1 - ct) * f - 1)
            pts, chip = self._native(np.ascontiguousarray(big), box)
            pts = pts / f + np.array([cl, ct], np.float64)
        else:
            pts, chip = self._native(rgb, (l, t, r, b))
        return Face(det.box, det.score, pts, chip, assess(chip, pts, det.score))

    def _from_detector(self, rgb: np.ndarray, det):
        """RetinaFace's detections: the chip from its landmarks (fused with dlib's 5-point model's
        unless the engine says ``landmarks="detector"``); a face under ``small_face`` px is
        re-detected on its enlarged neighbourhood first (``retina.enlarged``), on a one-thread
        detector of the aligner's own, and aligned on that detection's own points."""
        from ..engine.pipeline import Face
        from ..engine.retina import RetinaDetector, dlib_points, enlarged, fused_points, pose_points

        if self.small_face and det.width < self.small_face:
            if self._redetector is None:
                self._redetector = RetinaDetector(threads=1)
            found = enlarged(self._redetector, rgb, det)
            if found is not None:
                big, bdet, f, (cl, ct) = found
                pts = dlib_points(bdet.landmarks)
                chip = self._chip(big, pts)
                pts = (pts + 0.5) / f - 0.5 + np.array([cl, ct])
                raw = (bdet.landmarks + 0.5) / f - 0.5 + np.array([cl, ct])
                face = Face(det.box, det.score, pts, chip, assess(chip, pose_points(raw), det.score))
                return self._with_second(face, rgb, det, raw)
        if getattr(self.engine, "landmarks", "fused") == "fused":
            pts = fused_points(det.landmarks, self._predict(rgb, det.box))
        else:
            pts = dlib_points(det.landmarks)
        chip = self._chip(rgb, pts)
        face = Face(det.box, det.score, pts, chip, assess(chip, pose_points(det.landmarks), det.score))
        return self._with_second(face, rgb, det, det.landmarks)

    def _with_second(self, face, rgb: np.ndarray, det, landmarks: np.ndarray):
        if self.second is not None:
            from dataclasses import replace

            face.second_crop = self.second.align(rgb, replace(det, landmarks=np.asarray(landmarks, np.float64)))
        return face

    def _predict(self, rgb: np.ndarray, box) -> np.ndarray:
        """dlib's 5-point model from ``box``: whole-pixel points (native when dlib imports)."""
        l, t, r, b = (int(round(float(v))) for v in box)
        if self._sp is None:
            return self.engine.shape_predictor.predict(rgb, (l, t, r, b))
        shape = self._sp(rgb, self._dlib.rectangle(l, t, r, b))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)

    def _chip(self, rgb: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """dlib's chip for 5 points rounded to whole pixels (native when dlib imports)."""
        p = np.floor(pts + 0.5)
        if self._sp is None:
            from ..engine.chips import face_chip

            return face_chip(rgb, p)
        dlib = self._dlib
        l, t = (int(v) for v in p.min(0))
        r, b = (int(v) for v in p.max(0))
        shape = dlib.full_object_detection(dlib.rectangle(l, t, r, b), [dlib.point(int(x), int(y)) for x, y in p])
        return np.asarray(dlib.get_face_chip(rgb, shape, size=150, padding=0.25))

    def _native(self, rgb: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
        """dlib's landmarks from ``box`` and the chip cut on them (both native)."""
        pts = self._predict(rgb, box)
        return pts, self._chip(rgb, pts)
