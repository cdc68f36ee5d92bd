"""Dense CRF refinement of CAM pseudo-labels (Kraehenbuehl & Koltun), via the optional `pydensecrf2`.

The WSSS literature refines pseudo-labels with a fully connected CRF (10 mean-field iterations, a
Gaussian smoothness kernel and an appearance kernel on RGB). Off by default for the pseudo-labels
(``pseudo_labels.crf``) and for DeepLabV2's test-time predictions (``deeplab.crf``); install with
the `crf` extra.
"""

from __future__ import annotations

import numpy as np

# deeplab-pytorch's test-time CRF for DeepLabV2 (configs/voc12.yaml and coco.yaml, CRF section)
DEEPLAB_CRF = dict(iterations=10, pos_w=3, pos_xy_std=1, bi_w=4, bi_xy_std=67, bi_rgb_std=3)


def dense_crf(
    image: np.ndarray,
    probs: np.ndarray,
    *,
    iterations: int = 10,
    pos_w: float = 3,
    pos_xy_std: float = 3,
    bi_w: float = 10,
    bi_xy_std: float = 50,
    bi_rgb_std: float = 13,
) -> np.ndarray:
    """(H, W, 3) uint8 image and (K, H, W) class probabilities -> (K, H, W) refined probabilities.

    The defaults are the pseudo-labels' CRF; ``DEEPLAB_CRF`` holds DeepLabV2's test-time one."""
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_softmax
    except ImportError as exc:  # the optional extra is missing
        raise ImportError(
            "pseudo_labels.crf and deeplab.crf need the `crf` extra: pip install -e '.[crf]'"
        ) from exc
    n_labels, height, width = probs.shape
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(
        np.ascontiguousarray(unary_from_softmax(probs.astype(np.float32), clip=1e-5))
    )
    crf.addPairwiseGaussian(sxy=pos_xy_std, compat=pos_w)
    crf.addPairwiseBilateral(
        sxy=bi_xy_std,
        srgb=bi_rgb_std,
        rgbim=np.ascontiguousarray(image, dtype=np.uint8),
        compat=bi_w,
    )
    return np.asarray(crf.inference(iterations), dtype=np.float32).reshape(n_labels, height, width)


def scores_to_probs(cams: np.ndarray, bg_threshold: float) -> np.ndarray:
    """(C, H, W) normalised CAMs -> (1 + C, H, W) probabilities with background = the threshold score."""
    background = np.full_like(cams[:1], bg_threshold)
    scores = np.concatenate([background, cams]) + 1e-5
    return scores / scores.sum(axis=0, keepdims=True)
