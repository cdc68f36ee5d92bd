"""Human, face and text masks (paper section 3.2): priors that weight each attribute's CAM.

Every backend maps an (H, W, 3) uint8 RGB image to a ``MaskResult``: a float mask in [0, 1] of the
image's size, plus boxes where the backend gives them. Backends by kind (params ``masks.*``):

========  ==============  ===========================================================
kind      backend         what runs
========  ==============  ===========================================================
text      ``rapidocr``    PP-OCRv6 text-line detection on onnxruntime (default), and
                          with ``masks.read_text`` recognition of each line
text      ``paddleocr``   the same model through PaddleOCR 3.x (extra ``paddle``)
human     ``mediapipe``   MediaPipe selfie segmentation (.tflite on ai-edge-litert)
human     ``simulated``   SynthPriv's simulated human parser, read from disk
face      ``mediapipe``   MediaPipe full-range face detection (boxes)
========  ==============  ===========================================================

Model files: rapidocr's wheel ships the OCR model; the MediaPipe files ship inside this package
(``privobfnet/masks/models/``, ``privobfnet.masks.assets``); PaddleOCR's model folder is made in
``<cache_dir>/paddleocr``. The CLI and the stages share one ``cache_dir``
(``privobfnet.masks.assets.default_cache_dir``: $PRIVOBFNET_CACHE_DIR, else ~/.cache/privobfnet).
"""

from __future__ import annotations

import os

from privobfnet.config import MasksConfig
from privobfnet.masks.base import (
    Box,
    MaskBackend,
    MaskKind,
    MaskResult,
    NoPrior,
    coverage,
    mask_to_uint8,
)


def build_backend(
    kind: MaskKind,
    backend: str,
    *,
    margin_px: int = 2,
    limit_side: int = 960,
    parser_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike,
    threads: int = 1,
    read_text: bool = False,
) -> MaskBackend:
    """One backend by kind and name; its model is loaded here, once. ``read_text``: text backends
    also recognise every line they detect (``MaskResult.lines``)."""
    if (kind, backend) == ("text", "rapidocr"):
        from privobfnet.masks.text import RapidOCRText

        return RapidOCRText(
            limit_side=limit_side, margin_px=margin_px, threads=threads, read=read_text
        )
    if (kind, backend) == ("text", "paddleocr"):
        from privobfnet.masks.text import PaddleOCRText

        return PaddleOCRText(
            limit_side=limit_side,
            margin_px=margin_px,
            cache_dir=cache_dir,
            threads=threads,
            read=read_text,
        )
    if (kind, backend) == ("human", "mediapipe"):
        from privobfnet.masks.mediapipe import SelfieSegmenter

        return SelfieSegmenter(threads=threads)
    if (kind, backend) == ("human", "simulated"):
        from privobfnet.masks.simulated import SimulatedHumanParser

        if parser_dir is None:
            raise ValueError("the simulated human parser needs parser_dir")
        return SimulatedHumanParser(parser_dir=parser_dir)
    if (kind, backend) == ("face", "simulated"):
        from privobfnet.masks.simulated import SimulatedFaceDetector

        if parser_dir is None:
            raise ValueError("the simulated face detector needs parser_dir (its folder's sibling)")
        return SimulatedFaceDetector(parser_dir=parser_dir)
    if (kind, backend) == ("face", "mediapipe"):
        from privobfnet.masks.mediapipe import FaceDetector

        return FaceDetector(threads=threads)
    raise ValueError(f"no {kind} mask backend named {backend!r}")


def configured_backends(
    cfg: MasksConfig,
    *,
    needed: set[str],
    parser_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    threads: int = 1,
) -> dict[str, MaskBackend]:
    """The human, text and face backends ``cfg`` selects.

    A mask kind not in ``needed`` (no class of the data set uses it, e.g. text on VOC) gets
    ``NoPrior`` (all ones) instead of a model; ``face_backend: none`` gives no face backend.
    """
    names = {"human": cfg.human_backend, "text": cfg.text_backend, "face": cfg.face_backend}
    backends: dict[str, MaskBackend] = {}
    for kind in ("human", "text", "face"):
        if kind != "face" and kind not in needed:
            backends[kind] = NoPrior(kind)
        elif names[kind] != "none":
            backends[kind] = build_backend(
                kind,
                names[kind],
                margin_px=cfg.text_margin_px,
                limit_side=cfg.text_det_limit_side,
                parser_dir=parser_dir,
                cache_dir=cache_dir,
                threads=threads,
                read_text=cfg.read_text,
            )
    return backends


__all__ = [
    "Box",
    "MaskBackend",
    "MaskKind",
    "MaskResult",
    "NoPrior",
    "build_backend",
    "configured_backends",
    "coverage",
    "mask_to_uint8",
]
