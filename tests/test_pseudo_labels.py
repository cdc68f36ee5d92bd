"""CAM -> pseudo-label protocol: multi-scale + flip, per-class max-normalisation, background threshold."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from privobfnet.pseudo_labels import cams_to_label, multiscale_cams


def test_cams_to_label_by_hand():
    cams = torch.tensor([[[0.9, 0.1], [0.2, 0.0]], [[0.5, 0.6], [0.1, 0.3]]])  # (C=2, 2, 2)
    # pixel (0,0): class 0 wins (0.9); (0,1): class 1 (0.6); (1,0): all < 0.25 -> bg; (1,1): class 1 (0.3)
    assert cams_to_label(cams, 0.25).tolist() == [[1, 2], [0, 2]]
    assert cams_to_label(cams, 0.95).tolist() == [[0, 0], [0, 0]]


def _stripe_cam_fn(calls):
    """A fake Model-Image: class 0 fires on the image's red channel, class 1 on its blue, at stride 4."""

    def cam_fn(image, human, text):
        calls.append(tuple(image.shape[-2:]))
        pooled = F.avg_pool2d(image, 4)  # (1, 3, h/4, w/4)
        return torch.stack([pooled[:, 0], pooled[:, 2], pooled[:, 1] * 0 - 1.0], dim=1)

    return cam_fn


def test_multiscale_cams_normalise_zero_absent_and_stay_aligned():
    image = torch.zeros(1, 3, 32, 48)
    image[:, 0, :, :20] = 1.0  # red on the left
    image[:, 2, :, 30:] = 1.0  # blue on the right
    masks = torch.zeros(1, 1, 32, 48)
    calls: list[tuple[int, int]] = []
    cams = multiscale_cams(
        _stripe_cam_fn(calls), image, masks, masks, scales=[0.5, 1.0, 2.0], labels=[1, 0, 1]
    )
    assert cams.shape == (3, 32, 48)
    assert calls == [
        (16, 24),
        (16, 24),
        (32, 48),
        (32, 48),
        (64, 96),
        (64, 96),
    ]  # each scale twice (flip)
    assert torch.isclose(cams[0].max(), torch.tensor(1.0))
    assert cams[1].abs().max() == 0  # absent from the image-level label
    assert cams[2].max() == 0  # negative CAMs are cut by the ReLU
    label = cams_to_label(cams, 0.25)
    # the flipped passes were flipped back: red stays left, nothing fires on the right
    assert (label[:, :16] == 1).all() and (label[:, 34:] == 0).all()


def test_flip_is_undone_for_an_asymmetric_model():
    image = torch.rand(1, 3, 16, 16)
    masks = torch.zeros(1, 1, 16, 16)

    def cam_fn(img, human, text):  # noqa: E306 - position-dependent: a ramp left to right
        ramp = torch.linspace(0, 1, img.shape[-1]).expand(1, 1, *img.shape[-2:])
        return ramp * img[:, :1]

    cams = multiscale_cams(cam_fn, image, masks, masks, scales=[1.0], labels=[1])
    flipped = multiscale_cams(cam_fn, image.flip(-1), masks, masks, scales=[1.0], labels=[1])
    assert torch.allclose(cams, flipped.flip(-1), atol=1e-5)
    assert np.isfinite(cams.numpy()).all()
