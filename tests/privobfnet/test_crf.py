"""Dense CRF refinement: snaps a blurry pseudo-label to the image's edges."""

from __future__ import annotations

import numpy as np

from privobfnet.crf import dense_crf, scores_to_probs


def test_crf_follows_the_image_edge():
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = 255  # a sharp vertical edge at x = 20
    cams = np.zeros((1, 40, 40), np.float32)
    cams[0, :, 14:] = np.linspace(0.3, 1.0, 26)  # a CAM that bleeds 6 px past the edge
    probs = scores_to_probs(cams, 0.25)
    assert np.allclose(probs.sum(axis=0), 1.0)
    before = probs.argmax(axis=0)
    after = dense_crf(image, probs, iterations=10).argmax(axis=0)
    assert (before[:, 14:20] == 1).all()  # the raw label spills over the edge
    assert (after[:, :20] == 0).mean() > 0.9 and (
        after[:, 22:] == 1
    ).mean() > 0.9  # the CRF pulls it back
