"""Text masks: PP-OCRv6 text-line detection, union of the line polygons, dilated; with ``read``
each detected line is also recognised (``privobfnet.text.read.LineReader``, ``MaskResult.lines``).

Two runtimes of the same detector, fed the same resized BGR image with the same settings:

- ``RapidOCRText`` (default): rapidocr with onnxruntime; its wheel ships ``PP-OCRv6_det_small.onnx``.
- ``PaddleOCRText`` (paper-faithful, extra ``paddle``): PaddleOCR 3.x ``TextDetection`` with
  ``engine="onnxruntime"`` pointed at a model folder holding that same ``.onnx`` file and the
  official ``inference.yml`` settings (PaddleOCR's defaults would download models, offline fails).

Preprocessing follows the official PP-OCRv6 ``inference.yml``: BGR, ImageNet mean/std. The image's
longer side is resized to ``limit_side`` (up or down) first, because SynthPriv's small images hold
text a few pixels high that the detector misses at native size.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from privobfnet.masks.base import Box, MaskResult, check_rgb

DET_MODEL_FILE = "PP-OCRv6_det_small.onnx"  # inside the rapidocr wheel's models/ folder
PADDLE_MODEL_NAME = "PP-OCRv6_small_det"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# DB post-processing, tuned for recall since a missed line costs a CAM prior more than a spurious
# one: thresh and max_candidates are the official values; box_thresh 0.3 (official 0.45), unclip
# 1.6 (official 1.4) and the dilated probability map (official: none) are rapidocr's defaults.
# Recall of SynthPriv's text lines at 160 px, limit 320: 0.93 with these, 0.89 with the official ones.
DET_THRESH = 0.2
DET_BOX_THRESH = 0.3
DET_UNCLIP_RATIO = 1.6
DET_USE_DILATION = True
DET_MAX_CANDIDATES = 3000
# A "line" covering over half the image is the detector firing on texture (seen on ~2% of SynthPriv
# images, e.g. a whole-image box on a plain background): it is dropped, not masked.
MAX_LINE_SHARE = 0.5

_PADDLE_INFERENCE_YML = f"""\
Global:
  model_name: {PADDLE_MODEL_NAME}
PreProcess:
  transform_ops:
  - DecodeImage: {{channel_first: false, img_mode: BGR}}
  - DetLabelEncode: null
  - DetResizeForTest: null
  - NormalizeImage: {{mean: {list(IMAGENET_MEAN)}, std: {list(IMAGENET_STD)}, scale: 1./255., order: hwc}}
  - ToCHWImage: null
  - KeepKeys: {{keep_keys: [image, shape, polys, ignore_tags]}}
PostProcess:
  name: DBPostProcess
  thresh: {DET_THRESH}
  box_thresh: {DET_BOX_THRESH}
  unclip_ratio: {DET_UNCLIP_RATIO}
  max_candidates: {DET_MAX_CANDIDATES}
  use_dilation: {str(DET_USE_DILATION).lower()}
"""  # the official file's preprocessing; post-processing as above (shared with RapidOCRText)


def rapidocr_model_path() -> Path:
    """The PP-OCRv6 small detection model shipped in the rapidocr wheel."""
    import rapidocr

    return Path(rapidocr.__file__).resolve().parent / "models" / DET_MODEL_FILE


def resize_long_side(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """Resize so the longer side is ``side`` pixels; returns (resized, scale = new / old)."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if abs(scale - 1.0) < 1e-6:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    return cv2.resize(image, size, interpolation=interpolation), scale


def polygons_to_mask(
    polygons: Sequence[np.ndarray], shape: tuple[int, int], margin_px: int
) -> np.ndarray:
    """(H, W) float32 mask: the union of filled polygons ((K, 2) x/y points), dilated by ``margin_px``."""
    mask = np.zeros(shape, np.uint8)
    for polygon in polygons:
        cv2.fillPoly(mask, [np.round(np.asarray(polygon, np.float64)).astype(np.int32)], 1)
    if margin_px > 0 and mask.any():
        kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * margin_px + 1, 2 * margin_px + 1)
        )
        mask = cv2.dilate(mask, kernel)
    return mask.astype(np.float32)


def _result(
    polygons: Sequence[np.ndarray],
    scores: Sequence[float],
    scale: float,
    shape: tuple[int, int],
    margin_px: int,
    reader=None,
    image: np.ndarray | None = None,
) -> MaskResult:
    """Polygons found on the resized image -> mask and boxes in the original image's pixels."""
    h, w = shape
    lines = [
        (np.asarray(p, np.float64).reshape(-1, 2) / scale, float(s))
        for p, s in zip(polygons, scores)
    ]
    lines = [
        (p, s) for p, s in lines if cv2.contourArea(p.astype(np.float32)) <= MAX_LINE_SHARE * h * w
    ]
    boxes: list[Box] = []
    for polygon, score in lines:
        x0, y0 = np.clip(polygon.min(0), 0, [w, h])
        x1, y1 = np.clip(polygon.max(0), 0, [w, h])
        boxes.append((float(x0), float(y0), float(x1), float(y1), float(score)))
    kept = tuple(p for p, _ in lines)
    return MaskResult(
        polygons_to_mask(list(kept), shape, margin_px),
        tuple(boxes),
        kept,
        tuple(reader(image, kept)) if reader is not None else (),
    )


class RapidOCRText:
    """Text mask from rapidocr's PP-OCRv6 detector (onnxruntime), detection only."""

    name = "rapidocr"
    kind = "text"

    def __init__(self, *, limit_side: int, margin_px: int, threads: int = 1, read: bool = False):
        from rapidocr import RapidOCR

        self.limit_side = limit_side
        self.margin_px = margin_px
        self._reader = _reader(read, threads)
        self._engine = RapidOCR(
            params={
                "Global.use_cls": False,
                "Global.use_rec": False,
                "Global.log_level": "error",
                "Det.model_path": str(rapidocr_model_path()),
                "Det.limit_side_len": limit_side,
                "Det.limit_type": "max",
                "Det.mean": list(IMAGENET_MEAN),
                "Det.std": list(IMAGENET_STD),
                "Det.thresh": DET_THRESH,
                "Det.box_thresh": DET_BOX_THRESH,
                "Det.unclip_ratio": DET_UNCLIP_RATIO,
                "Det.use_dilation": DET_USE_DILATION,
                "Det.max_candidates": DET_MAX_CANDIDATES,
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )

    def __call__(self, image: np.ndarray, *, image_id: str | None = None) -> MaskResult:
        """Mask of the text lines in an (H, W, 3) uint8 RGB image."""
        check_rgb(image)
        resized, scale = resize_long_side(image, self.limit_side)
        bgr = np.ascontiguousarray(resized[:, :, ::-1])  # rapidocr takes arrays as BGR
        out = self._engine(bgr, use_det=True, use_cls=False, use_rec=False)
        polygons = getattr(out, "boxes", None)
        scores = getattr(out, "scores", None)
        if polygons is None or len(polygons) == 0:
            return MaskResult(np.zeros(image.shape[:2], np.float32))
        return _result(
            list(polygons),
            list(scores),
            scale,
            image.shape[:2],
            self.margin_px,
            self._reader,
            image,
        )


def _reader(read: bool, threads: int):
    """The line reader when lines are to be read, else None."""
    if not read:
        return None
    from privobfnet.text.read import LineReader

    return LineReader(threads=threads)


def paddle_model_dir(cache_dir: str | os.PathLike) -> Path:
    """A PaddleX model folder (inference.onnx + inference.yml) holding rapidocr's PP-OCRv6 file."""
    folder = Path(cache_dir) / "paddleocr" / PADDLE_MODEL_NAME
    source = rapidocr_model_path()
    onnx, yml = folder / "inference.onnx", folder / "inference.yml"
    if not (
        onnx.is_file()
        and onnx.stat().st_size == source.stat().st_size
        and yml.is_file()
        and yml.read_text() == _PADDLE_INFERENCE_YML
    ):
        folder.mkdir(parents=True, exist_ok=True)
        for target, write in (
            (onnx, lambda p: shutil.copyfile(source, p)),
            (yml, lambda p: Path(p).write_text(_PADDLE_INFERENCE_YML)),
        ):
            part = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            write(part)
            os.replace(part, target)
    return folder


class PaddleOCRText:
    """Text mask from PaddleOCR's ``TextDetection`` on onnxruntime (install the ``paddle`` extra)."""

    name = "paddleocr"
    kind = "text"

    def __init__(
        self,
        *,
        limit_side: int,
        margin_px: int,
        cache_dir: str | os.PathLike,
        threads: int = 1,
        read: bool = False,
    ):
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")  # no network probe
        try:
            from paddleocr import TextDetection
        except ImportError as exc:
            raise ImportError(
                "masks.text_backend=paddleocr needs the `paddle` extra: pip install -e '.[paddle]'"
            ) from exc
        self.limit_side = limit_side
        self.margin_px = margin_px
        self._reader = _reader(read, threads)
        self._model = TextDetection(
            model_name=PADDLE_MODEL_NAME,
            model_dir=str(paddle_model_dir(cache_dir)),
            engine="onnxruntime",
            device="cpu",
            engine_config={"intra_op_num_threads": threads, "inter_op_num_threads": 1},
            limit_side_len=limit_side,
            limit_type="max",
            thresh=DET_THRESH,
            box_thresh=DET_BOX_THRESH,
            unclip_ratio=DET_UNCLIP_RATIO,
        )

    def __call__(self, image: np.ndarray, *, image_id: str | None = None) -> MaskResult:
        """Mask of the text lines in an (H, W, 3) uint8 RGB image."""
        check_rgb(image)
        resized, scale = resize_long_side(image, self.limit_side)
        bgr = np.ascontiguousarray(resized[:, :, ::-1])  # PaddleX takes arrays as BGR
        (result,) = self._model.predict(bgr)
        polygons, scores = list(result["dt_polys"]), list(result["dt_scores"])
        if not polygons:
            return MaskResult(np.zeros(image.shape[:2], np.float32))
        return _result(
            polygons, scores, scale, image.shape[:2], self.margin_px, self._reader, image
        )
