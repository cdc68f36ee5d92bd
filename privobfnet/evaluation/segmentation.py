"""Segmentation metrics from a confusion matrix: mIoU, per-class IoU, pixel accuracy.

The confusion matrix has ground truth along rows and prediction along columns; matrices of
several images add up (``cm += confusion_matrix(...)``), so a data set is scored by accumulating.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np
import pandas as pd
import torch

from privobfnet.cams import label_map
from privobfnet.data.images import load_rgb, load_truth
from privobfnet.evaluation.baselines import background_everywhere
from privobfnet.inference import predict_segmentation
from privobfnet.labels import BACKGROUND, IGNORE_LABEL, SegmentationClasses

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def confusion_matrix(
    pred: Array, target: Array, n_classes: int, ignore_index: int = IGNORE_LABEL
) -> Array:
    """(n_classes, n_classes) int64 counts, cm[t, p] = pixels of class t predicted as p.

    ``pred`` and ``target`` are label maps of one shape, both numpy or both torch (the result is
    of the same kind, on the same device). Pixels whose target is ``ignore_index`` are skipped; any
    other value outside 0..n_classes-1 is an error, as is a prediction out of range.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    is_torch = isinstance(target, torch.Tensor)
    if is_torch != isinstance(pred, torch.Tensor):
        raise TypeError("pred and target must both be numpy arrays or both torch tensors")
    target = target.reshape(-1).long() if is_torch else target.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).long() if is_torch else pred.reshape(-1).astype(np.int64)
    keep = target != ignore_index
    target, pred = target[keep], pred[keep]
    for name, values in (("target", target), ("pred", pred)):
        if len(values) and (int(values.min()) < 0 or int(values.max()) >= n_classes):
            low, high = int(values.min()), int(values.max())
            raise ValueError(
                f"{name} has labels outside 0..{n_classes - 1} (min {low}, max {high})"
            )
    flat = target * n_classes + pred
    if is_torch:
        return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    return (
        np.bincount(flat, minlength=n_classes * n_classes)
        .astype(np.int64)
        .reshape(n_classes, n_classes)
    )


def _as_numpy(cm: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(cm, torch.Tensor):
        cm = cm.detach().cpu().numpy()
    return np.asarray(cm, dtype=np.float64)


def per_class_iou(cm: np.ndarray | torch.Tensor) -> np.ndarray:
    """(n_classes,) IoU = TP / (TP + FP + FN); NaN for a class in neither prediction nor ground truth."""
    cm = _as_numpy(cm)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    iou = np.full(len(tp), np.nan)
    present = union > 0
    iou[present] = tp[present] / union[present]
    return iou


def miou_from_confusion(cm: np.ndarray | torch.Tensor) -> tuple[float, np.ndarray]:
    """(mean IoU over the classes present in prediction or ground truth, per-class IoU with NaN)."""
    iou = per_class_iou(cm)
    present = ~np.isnan(iou)
    miou = float(iou[present].mean()) if present.any() else float("nan")
    return miou, iou


def pixel_accuracy(cm: np.ndarray | torch.Tensor) -> float:
    """Share of non-ignored pixels labelled correctly (NaN when there are none)."""
    cm = _as_numpy(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else float("nan")


def _finite(value: float) -> float | None:
    """NaN -> None (JSON has no NaN)."""
    return None if np.isnan(value) else float(value)


def segmentation_scores(cm: np.ndarray | torch.Tensor, class_names: list[str]) -> dict:
    """mIoU, pixel accuracy and per-class IoU by name (None where the class is absent), JSON-ready."""
    miou, iou = miou_from_confusion(cm)
    if len(class_names) != len(iou):
        raise ValueError(f"{len(class_names)} class names for a {len(iou)}-class confusion matrix")
    return {
        "miou": _finite(miou),
        "pixel_accuracy": _finite(pixel_accuracy(cm)),
        "per_class_iou": {name: _finite(v) for name, v in zip(class_names, iou)},
    }


class CamScores:
    """Confusion matrices of one split's pseudo-labels against ground truth: at the chosen background
    threshold, and at every threshold of the sweep (always on the raw CAMs). ``class_names`` are the
    segmentation classes; CAMs, labels and ground truth are in their encoding."""

    def __init__(self, class_names: Sequence[str], *, sweep: Sequence[float]):
        self.names = [BACKGROUND, *class_names]
        n_labels = len(self.names)
        self.chosen = np.zeros((n_labels, n_labels), np.int64)
        self.sweep = {t: np.zeros((n_labels, n_labels), np.int64) for t in sweep}

    def add(self, label: np.ndarray, cams: torch.Tensor, truth: np.ndarray) -> None:
        """One image: its written pseudo-label, its raw CAMs, its ground truth (255 ignored)."""
        self.chosen += confusion_matrix(label, truth, len(self.names))
        for threshold, cm in self.sweep.items():
            cm += confusion_matrix(label_map(cams, threshold), truth, len(self.names))

    def metrics(self) -> dict:
        """CAM mIoU, pixel accuracy and per-class IoU at the chosen threshold; mIoU per swept threshold."""
        scores = segmentation_scores(self.chosen, self.names)
        swept = {
            f"{t:.2f}": segmentation_scores(cm, self.names)["miou"] for t, cm in self.sweep.items()
        }
        scored = {t: m for t, m in swept.items() if m is not None}
        return {
            "cam_miou": scores["miou"],
            "pixel_accuracy": scores["pixel_accuracy"],
            "background_everywhere_miou": segmentation_scores(
                background_everywhere(self.chosen), self.names
            )["miou"],
            "per_class_iou": scores["per_class_iou"],
            "sweep_miou": swept,
            "best_bg_threshold": float(max(scored, key=scored.get)) if scored else None,
        }


def split_confusion(
    model,
    manifest: pd.DataFrame,
    *,
    max_pixels: int,
    seg: SegmentationClasses,
    device,
    msc_scales: Sequence[float] = (),
    crf: bool = False,
) -> tuple[np.ndarray, int]:
    """Confusion matrix (segmentation labels) of full-image predictions (``predict_segmentation``
    with ``msc_scales`` and ``crf``) against ground truth, and the image count."""
    cm = np.zeros((seg.n_labels, seg.n_labels), dtype=np.int64)
    rows = manifest[manifest["mask_path"].notna()]
    for row in rows.itertuples(index=False):
        image = load_rgb(row.path, max_pixels=max_pixels)
        mask = load_truth(row.mask_path, seg, max_pixels=max_pixels)
        prediction = predict_segmentation(model, image, device, msc_scales=msc_scales, crf=crf)
        cm += confusion_matrix(prediction, mask, seg.n_labels)
    return cm, len(rows)
