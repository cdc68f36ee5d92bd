"""The detectors the obfuscation tool runs: OCR text lines, faces, people, and OCR recognition.

Text lines and faces come from the masks stage's backends (``privobfnet.masks.build_backend``),
so the text prior given to the model is made exactly as in training; people from MediaPipe's
selfie segmentation. ``TextReader`` (detection + recognition, rapidocr's PP-OCRv6 models shipped
in its wheel) reads what is left in an output for ``--verify``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from privobfnet.masks import MaskBackend, build_backend
from privobfnet.masks.text import (
    DET_BOX_THRESH,
    DET_THRESH,
    DET_UNCLIP_RATIO,
    IMAGENET_MEAN,
    IMAGENET_STD,
    rapidocr_model_path,
    resize_long_side,
)
from privobfnet.obfuscate.regions import Detections

REC_MODEL_FILE = "PP-OCRv6_rec_small.onnx"  # beside the detection model in the rapidocr wheel
# OCR detection input (longer side) for snapping and --hide-all text. bench/obfuscate.py --sweep, one
# thread, 24 documents of 640 x 480 (118 strings, text 16-30 px, a photo) and 40 SynthPriv test images:
# share of strings still read after --hide-all text 0.008 / 0.008 / 0 / 0 at 160 / 320 / 480 / 640
# (SynthPriv: 0 at every size), detection 9 / 20 / 48 / 122 ms per document. 640 is chosen: no leak,
# and text half as tall as at 320 is still found; traded: ~100 ms (end to end stays under 300 ms) and
# a larger hidden share on documents (0.36 against 0.29: more texture in the photo taken for text).
DEFAULT_OCR_SIDE = 640
VERIFY_OCR_SIDE = 960  # the red team reads at a larger size than the redactor detects
# lines: the text detector also recognises every line (text typing reads them)
DETECTOR_KINDS = ("text", "lines", "face", "person")


@dataclass(frozen=True)
class TextLine:
    """One line the OCR read: polygon (K, 2) x/y in the image's pixels, text and confidence."""

    polygon: np.ndarray
    text: str
    score: float


class TextReader:
    """rapidocr detection + recognition (no angle classifier), on an image resized to ``limit_side``."""

    def __init__(self, *, limit_side: int = VERIFY_OCR_SIDE, threads: int = 1):
        from rapidocr import RapidOCR

        det = rapidocr_model_path()
        self.limit_side = limit_side
        self._engine = RapidOCR(
            params={
                "Global.use_cls": False,
                "Global.log_level": "error",
                "Global.text_score": 0.0,
                "Det.model_path": str(det),
                "Rec.model_path": str(det.parent / REC_MODEL_FILE),
                "Det.limit_side_len": limit_side,
                "Det.limit_type": "max",
                "Det.mean": list(IMAGENET_MEAN),
                "Det.std": list(IMAGENET_STD),
                "Det.thresh": DET_THRESH,
                "Det.box_thresh": DET_BOX_THRESH,
                "Det.unclip_ratio": DET_UNCLIP_RATIO,
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )

    def __call__(self, image: np.ndarray) -> list[TextLine]:
        """Every text line found in an (H, W, 3) uint8 RGB image, with what it reads."""
        resized, scale = resize_long_side(image, self.limit_side)
        out = self._engine(
            np.ascontiguousarray(resized[:, :, ::-1]), use_cls=False
        )  # rapidocr takes BGR
        if getattr(out, "boxes", None) is None or out.txts is None:
            return []
        return [
            TextLine(np.asarray(box, np.float64).reshape(-1, 2) / scale, str(text), float(score))
            for box, text, score in zip(out.boxes, out.txts, out.scores)
        ]


class Detectors:
    """Text-line, face and person detectors, each built once; None where not wanted."""

    def __init__(
        self,
        *,
        text: MaskBackend | None = None,
        face: MaskBackend | None = None,
        person: MaskBackend | None = None,
    ):
        self.text, self.face, self.person = text, face, person

    def __call__(self, image: np.ndarray, *, timings: dict[str, float] | None = None) -> Detections:
        """Run every configured detector on an (H, W, 3) uint8 RGB image; timings (s) per step added."""
        timings = {} if timings is None else timings
        lines, text_mask, faces, person, read = (), None, (), None, ()
        start = time.perf_counter()
        if self.text is not None:
            result = self.text(image)
            lines, text_mask, read = result.polygons, result.mask, result.lines
        timings["ocr"] = timings.get("ocr", 0.0) + time.perf_counter() - start
        start = time.perf_counter()
        if self.face is not None:
            faces = self.face(image).boxes
        if self.person is not None:
            person = self.person(image).mask
        timings["face_person"] = timings.get("face_person", 0.0) + time.perf_counter() - start
        return Detections(
            text_lines=tuple(lines),
            faces=tuple(faces),
            person=person,
            text_mask=text_mask,
            lines=tuple(read),
        )


def build_detectors(
    kinds: set[str],
    *,
    cache_dir: str | os.PathLike,
    text_limit_side: int = DEFAULT_OCR_SIDE,
    text_margin_px: int = 2,
    threads: int = 1,
    factory: Callable[..., MaskBackend] = build_backend,
) -> Detectors:
    """Detectors for the kinds needed ("text", "lines", "face", "person"); ``cache_dir`` is the
    backends' model cache (rapidocr's and MediaPipe's models ship in their packages and need none).
    "lines" is the text detector reading every line it finds."""
    unknown = set(kinds) - set(DETECTOR_KINDS)
    if unknown:
        raise ValueError(
            f"unknown detector kinds {sorted(unknown)} (known: {', '.join(DETECTOR_KINDS)})"
        )
    text = face = person = None
    if "text" in kinds or "lines" in kinds:
        text = factory(
            "text",
            "rapidocr",
            limit_side=text_limit_side,
            margin_px=text_margin_px,
            cache_dir=cache_dir,
            threads=threads,
            read_text="lines" in kinds,
        )
    if "face" in kinds:
        face = factory("face", "mediapipe", cache_dir=cache_dir, threads=threads)
    if "person" in kinds:
        person = factory("human", "mediapipe", cache_dir=cache_dir, threads=threads)
    return Detectors(text=text, face=face, person=person)
