"""Human masks and face boxes from MediaPipe's models, run with ai-edge-litert (no mediapipe import).

The pre- and post-processing re-implements what the MediaPipe graphs of 0.10.21 do:

- selfie segmentation (general model): the image stretched to 256 x 256, RGB in [0, 1]; the
  output is a per-pixel person probability, resized back to the image (bilinear).
- face detection, full-range model (BlazeFace, 192 x 192, for faces up to ~5 m, i.e. ordinary
  photos): the image letterboxed (aspect kept, zero padding centred), RGB in [-1, 1]; 2304
  anchors on a 48 x 48 grid (one per cell, fixed size), boxes decoded as centre offsets and sizes
  scaled by 192; sigmoid scores (logits clipped at +-100) >= 0.5; weighted non-maximum
  suppression at IoU 0.3 (overlapping boxes averaged by score).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from privobfnet.masks.assets import mediapipe_models
from privobfnet.masks.base import Box, MaskResult, boxes_mask, check_rgb

SELFIE_SIZE = 256
FACE_SIZE = 192
FACE_GRID = 48  # stride 4 on 192
FACE_MIN_SCORE = 0.5
FACE_NMS_IOU = 0.3
SCORE_CLIP = 100.0


def _interpreter(path: os.PathLike, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def _invoke(interpreter, x: np.ndarray) -> list[np.ndarray]:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]


class SelfieSegmenter:
    """Person mask (soft, in [0, 1]) from MediaPipe selfie segmentation (the packaged model file)."""

    name = "mediapipe"
    kind = "human"

    def __init__(self, *, threads: int = 1):
        models = mediapipe_models()
        self._interpreter = _interpreter(models["selfie_segmentation.tflite"], threads)

    def __call__(self, image: np.ndarray, *, image_id: str | None = None) -> MaskResult:
        """Person probability per pixel of an (H, W, 3) uint8 RGB image."""
        check_rgb(image)
        h, w = image.shape[:2]
        x = cv2.resize(image, (SELFIE_SIZE, SELFIE_SIZE), interpolation=cv2.INTER_AREA)
        x = (x.astype(np.float32) / 255.0)[None]  # (1, 256, 256, 3)
        (prob,) = _invoke(self._interpreter, x)  # (1, 256, 256, 1)
        mask = cv2.resize(prob[0, :, :, 0], (w, h), interpolation=cv2.INTER_LINEAR)
        return MaskResult(np.clip(mask, 0.0, 1.0).astype(np.float32))


def face_anchors(grid: int = FACE_GRID) -> np.ndarray:
    """(grid * grid, 2) anchor centres (x, y) in [0, 1], row-major, one per cell."""
    ys, xs = np.mgrid[0:grid, 0:grid].astype(np.float32)
    return np.stack([(xs.ravel() + 0.5) / grid, (ys.ravel() + 0.5) / grid], axis=1)


def _area(b: np.ndarray) -> np.ndarray:
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / np.maximum(_area(box) + _area(others) - inter, 1e-12)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's WEIGHTED suppression: each kept box is the score-weighted mean of its cluster.

    ``boxes``: (N, 4) x0, y0, x1, y1; returns [(box, score of the cluster's best)], best first.
    """
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    kept = []
    remaining = np.arange(len(boxes))
    while len(remaining):
        best = remaining[0]
        cluster = remaining[_iou(boxes[best], boxes[remaining]) > iou_threshold]
        weights = scores[cluster][:, None]
        kept.append(((boxes[cluster] * weights).sum(0) / weights.sum(), float(scores[best])))
        remaining = remaining[~np.isin(remaining, cluster)]  # indices stay in score order
    return kept


class FaceDetector:
    """Face boxes from MediaPipe's full-range face detector; the mask is the union of the boxes."""

    name = "mediapipe"
    kind = "face"

    def __init__(self, *, threads: int = 1, min_score: float = FACE_MIN_SCORE):
        models = mediapipe_models()
        self._interpreter = _interpreter(models["face_detection_full_range_sparse.tflite"], threads)
        self._anchors = face_anchors()
        self.min_score = min_score

    def __call__(self, image: np.ndarray, *, image_id: str | None = None) -> MaskResult:
        """Face boxes (x0, y0, x1, y1, score) in pixels of an (H, W, 3) uint8 RGB image."""
        check_rgb(image)
        h, w = image.shape[:2]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2  # letterbox, centred like MediaPipe
        square = cv2.copyMakeBorder(
            image, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0
        )
        x = cv2.resize(square, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
        x = (x.astype(np.float32) / 127.5 - 1.0)[None]  # (1, 192, 192, 3) in [-1, 1]
        regressors, logits = _invoke(self._interpreter, x)  # (1, 2304, 16), (1, 2304, 1)
        logits = np.clip(logits[0, :, 0].astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
        scores = 0.5 * (1.0 + np.tanh(logits / 2))  # the sigmoid, without exp overflow
        keep = scores >= self.min_score
        boxes: list[Box] = []
        if keep.any():
            raw, anchors = regressors[0, keep, :4] / FACE_SIZE, self._anchors[keep]
            centres = anchors + raw[:, :2]  # fixed-size anchors: offsets are in units of the image
            half = raw[:, 2:4] / 2
            corners = (
                np.concatenate([centres - half, centres + half], axis=1) * side
            )  # square's pixels
            for box, score in weighted_nms(corners, scores[keep], FACE_NMS_IOU):
                x0, x1 = np.clip([box[0] - left, box[2] - left], 0, w)
                y0, y1 = np.clip([box[1] - top, box[3] - top], 0, h)
                if x1 > x0 and y1 > y0:
                    boxes.append((float(x0), float(y0), float(x1), float(y1), score))
        return MaskResult(boxes_mask(tuple(boxes), (h, w)), tuple(boxes))
