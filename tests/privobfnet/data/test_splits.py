"""Tests of splits: the training batch's two augmentations (squash + flip, L2G's crop + jitter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from privobfnet.data.manifest import build_manifest
from privobfnet.data.priors import Priors, write_mask
from privobfnet.data.splits import L2G_JITTER, SplitData, color_jitter
from tests.conftest import unmasked_record, with_changes

CLASSES = ["a0_safe", "a9_face_complete"]


@pytest.fixture
def wide_split(tmp_path, ci_config):
    """Two 60 x 90 images whose right third is white, the human mask marking that third."""
    records, priors = [], {}
    for i in range(2):
        image = np.full((60, 90, 3), 40, np.uint8)
        image[:, 60:] = 255
        mask = np.zeros((60, 90), np.uint8)
        mask[:, 60:] = 255
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        write_mask(tmp_path / f"{i}_human.png", mask)
        records.append(unmasked_record(str(i), tmp_path / f"{i}.png", 90, 60))
        priors[str(i)] = Priors(str(i), tmp_path / f"{i}_human.png", None, None)
    manifest = build_manifest(records, dataset="synthpriv", class_names=CLASSES)

    def split(augment: str, input_size: int = 42) -> SplitData:
        cfg = with_changes(ci_config, "train", augment=augment, input_size=input_size)
        return SplitData(cfg, manifest, priors)

    return split


def test_l2g_augmentation_crops_the_short_side_resized_image_with_its_masks(wide_split):
    data = wide_split("l2g")  # short side 60 -> 48 (42 * 8 / 7), so 48 x 72, cropped to 42 x 42
    batches = [
        data.batch([0, 1], torch.device("cpu"), torch.Generator().manual_seed(s)) for s in (0, 0, 1)
    ]
    first = batches[0]
    assert first.images.shape == (2, 3, 42, 42) and first.human_masks.shape == (2, 1, 42, 42)
    assert torch.equal(first.images, batches[1].images)  # a function of the generator
    assert not torch.equal(first.images, batches[2].images)
    # the mask marks the bright third wherever the crop fell, colour jitter or not
    for images, masks in ((b.images, b.human_masks) for b in batches):
        brightness = images.mean(dim=1, keepdim=True)
        inside, outside = masks > 0.9, masks < 0.1
        assert inside.any() or outside.all()
        if inside.any() and outside.any():
            assert brightness[inside].min() > brightness[outside].max()
    # the aspect is kept: the bright third is 24 of 72 columns, not 14 of 42 (a squash would give)
    rgb, human, _, _ = data._short_sample(0)
    assert tuple(rgb.shape[1:]) == (48, 72) and int((human[0, 0] > 0.5).sum()) == 24


def test_squash_flip_is_the_default_and_keeps_the_whole_image(wide_split):
    batch = wide_split("squash_flip").batch(
        [0, 1], torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    assert batch.images.shape == (2, 3, 42, 42)
    assert all(0.3 < float(m.mean()) < 0.37 for m in batch.human_masks)  # a third, squashed


@pytest.mark.parametrize("seed", range(4))
def test_color_jitter_is_torchvisions_with_its_draws_given(seed):
    """L2G's ColorJitter(0.3, 0.3, 0.3, 0.1) is torchvision's: same draws, same image."""
    image = torch.from_numpy(np.random.default_rng(seed).integers(0, 255, (3, 16, 20), np.uint8))
    torch.manual_seed(seed)
    expected = transforms.ColorJitter(*L2G_JITTER)(image)
    torch.manual_seed(seed)
    ranges = [[1 - s, 1 + s] for s in L2G_JITTER[:3]] + [[-L2G_JITTER[3], L2G_JITTER[3]]]
    order, *values = transforms.ColorJitter.get_params(*ranges)
    factors = torch.tensor(
        [(v - 1) / s for v, s in zip(values[:3], L2G_JITTER)] + [values[3] / L2G_JITTER[3]]
    )
    assert torch.equal(color_jitter(image, factors, order), expected)
