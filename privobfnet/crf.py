"""Dense CRF refinement of CAM pseudo-labels (Kraehenbuehl & Koltun), via the optional `pydensecrf2`.

The WSSS literature refines pseudo-labels with a fully connected CRF (10 mean-field iterations, a
Gaussian smoothness kernel and an appearance kernel on RGB). Off by default
(``pseudo_labels.crf``); install with the `crf` extra.
"""

from __future__ import annotations

import numpy as np


def dense_crf(image: np.ndarray, probs: np.ndarray, *, iterations: int = 10) -> np.ndarray:
    """(H, W, 3) uint8 image and (K, H, W) class probabilities -> (K, H, W) refined probabilities."""
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_softmax
    except ImportError as exc:  # the optional extra is missing
        raise ImportError(
            "pseudo_labels.crf needs the `crf` extra: pip install -e '.[crf]'"
        ) from exc
    n_labels, height, width = probs.shape
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(
        np.ascontiguousarray(unary_from_softmax(probs.astype(np.float32), clip=1e-5))
    )
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(
        sxy=50, srgb=13, rgbim=np.ascontiguousarray(image, dtype=np.uint8), compat=10
    )
    return np.asarray(crf.inference(iterations), dtype=np.float32).reshape(n_labels, height, width)


def scores_to_probs(cams: np.ndarray, bg_threshold: float) -> np.ndarray:
    """(C, H, W) normalised CAMs -> (1 + C, H, W) probabilities with background = the threshold score."""
    background = np.full_like(cams[:1], bg_threshold)
    scores = np.concatenate([background, cams]) + 1e-5
    return scores / scores.sum(axis=0, keepdims=True)
