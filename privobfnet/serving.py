"""Scoring images the way ``privobfnet score`` does: one object that the command and the served
model (the MLflow pyfunc model, ``ops/served_model.py``) both call, so their answers are the same.

:class:`Scorer` holds Model-Image (from an ensemble checkpoint, ``final.pt``) and the detectors that
make its priors (the person mask and the text-line mask, built on first use, as the command builds
them); it takes an image file, the bytes of one, or a decoded (H, W, 3) uint8 RGB array, and gives
the privacy score and the attribute probabilities (``privobfnet.inference.Prediction``). A file or
its bytes is decoded upright by ``decode_upright``, exactly as the command decodes its inputs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from privobfnet.config import Preferences
from privobfnet.data.errors import DataError
from privobfnet.inference import Prediction
from privobfnet.obfuscate.codec import decode_upright
from privobfnet.obfuscate.detect import DEFAULT_OCR_SIDE, Detectors, build_detectors
from privobfnet.obfuscate.engine import (
    LoadedModel,
    build_typer,
    load_model,
    model_kinds,
    predict_image,
)

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit
DEFAULTS = Preferences()  # the default redact settings: thresholds of the masks, not of the scores


class Scorer:
    """Model-Image with the detectors its priors come from; ``score*`` give one image's Prediction.

    Args:
        checkpoint: an ensemble checkpoint (``final.pt``), read with ``weights_only=True``.
        cache_dir: the detector model cache (MediaPipe's files, ``<cache_dir>/mediapipe``).
        device, ocr_side, threads, max_pixels: as the command's ``--device``, ``--ocr-side``,
            ``--threads`` and ``--max-pixels``.
        class_threshold, bg_threshold: what ``Prediction.masks`` is cut at (the score and the
            probabilities do not depend on them).
        typer: the learned line typer file (``data/text/typer.npz``) for a model with refined
            priors (``privobfnet.priors``), whose typed attributes are weighted by the lines typed
            as them; without it the lines are typed by the recognizers alone.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        *,
        cache_dir: str | os.PathLike,
        device: str | torch.device = "cpu",
        ocr_side: int = DEFAULT_OCR_SIDE,
        threads: int = 1,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        class_threshold: float = DEFAULTS.class_threshold,
        bg_threshold: float = DEFAULTS.bg_threshold,
        typer: str | os.PathLike | None = None,
    ):
        self.model: LoadedModel = load_model(checkpoint, device)
        # refined priors: the lines typed as each typed attribute, typed as the tool types them
        self.typer = (
            build_typer(DEFAULTS, self.model, typer) if self.model.layout.typed_classes else None
        )
        self.cache_dir, self.device, self.ocr_side, self.threads = (
            cache_dir,
            device,
            ocr_side,
            threads,
        )
        self.max_pixels = max_pixels
        self.class_threshold, self.bg_threshold = class_threshold, bg_threshold
        self._detectors: Detectors | None = None

    @property
    def class_names(self) -> list[str]:
        return self.model.class_names

    def prepare(self) -> Detectors:
        """The detectors of the model's priors (text lines, person mask), built on the first call;
        call it before any image to have a detector that cannot load fail there."""
        if self._detectors is None:
            self._detectors = build_detectors(
                model_kinds(self.model),
                cache_dir=self.cache_dir,
                text_limit_side=self.ocr_side,
                threads=self.threads,
            )
        return self._detectors

    def score(self, image: np.ndarray) -> Prediction:
        """Model-Image on one upright (H, W, 3) uint8 RGB image, with the detectors' priors."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"an image is an (H, W, 3) uint8 RGB array, got {image.shape} {image.dtype}"
            )
        return predict_image(
            self.model,
            image,
            self.prepare()(image),
            class_threshold=self.class_threshold,
            bg_threshold=self.bg_threshold,
            device=self.device,
            typer=self.typer,
        )

    def score_file(self, path: str | os.PathLike) -> Prediction:
        """An image file, decoded upright (``DataError`` naming the file when it cannot be)."""
        return self.score(decode_upright(path, max_pixels=self.max_pixels))

    def score_bytes(self, data: bytes, *, name: str = "image") -> Prediction:
        """The bytes of an image file (PNG, JPEG, ...); ``name`` stands for the file in errors."""
        with tempfile.TemporaryDirectory(prefix="privobfnet-score-") as tmp:
            path = Path(tmp, Path(name).name or "image")
            path.write_bytes(bytes(data))
            try:
                image = decode_upright(path, max_pixels=self.max_pixels)
            except DataError as exc:  # named as the caller knows it, not by the temp file
                raise DataError(name, exc.rule, exc.detail) from None
        return self.score(image)
