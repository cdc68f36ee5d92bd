"""Scorer: the scoring path of `privobfnet score` and the served model, on files, bytes and arrays."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from privobfnet.data.errors import DataError
from privobfnet.models.checkpoints import ensemble_checkpoint, model_meta
from privobfnet.models.privobfnet import build_model
from privobfnet.obfuscate import build_detectors, decode_upright
from privobfnet.obfuscate.engine import load_model, model_kinds, predict_image
from privobfnet.serving import Scorer
from tests.fixtures.documents import render_document
from tests.fixtures.models import ATTRIBUTES

MASK_TYPES = ["no_region", "none", "text"]  # the text-line prior only: no MediaPipe file needed


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(3)
    nets = [
        build_model(
            backbone="tiny",
            tiny_width=8,
            pretrained=None,
            mask_types=MASK_TYPES,
            background_channel=False,
            use_mask_weighting=True,
        )
        for _ in range(2)
    ]
    meta = model_meta(
        backbone="tiny",
        tiny_width=8,
        mask_types=MASK_TYPES,
        class_names=list(ATTRIBUTES),
        background_channel=False,
        use_mask_weighting=True,
        input_size=32,
    )
    path = tmp_path_factory.mktemp("model") / "final.pt"
    torch.save(ensemble_checkpoint(*nets, meta), path)
    return path


def test_files_bytes_and_arrays_score_as_the_model_with_its_detectors(checkpoint, tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(render_document()[0]).save(buffer, format="PNG")
    (tmp_path / "doc.png").write_bytes(buffer.getvalue())
    scorer = Scorer(checkpoint, cache_dir=tmp_path / "cache")
    assert model_kinds(scorer.model) == {"text"} and scorer.class_names == list(ATTRIBUTES)
    from_file = scorer.score_file(tmp_path / "doc.png")
    from_bytes = scorer.score_bytes(buffer.getvalue())

    image = decode_upright(tmp_path / "doc.png", max_pixels=10**8)
    model = load_model(checkpoint)
    detections = build_detectors({"text"}, cache_dir=tmp_path / "cache")(image)
    assert detections.text_mask is not None and detections.text_mask.any()  # the prior is used
    by_hand = predict_image(model, image, detections, class_threshold=0.5, bg_threshold=0.25)
    for prediction in (from_file, from_bytes, scorer.score(image)):
        assert prediction.privacy_score == by_hand.privacy_score
        np.testing.assert_array_equal(prediction.attribute_probs, by_hand.attribute_probs)


def test_bad_inputs_are_refused_with_their_name(checkpoint, tmp_path):
    scorer = Scorer(checkpoint, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match=r"^upload\.png: not a readable image"):
        scorer.score_bytes(b"not an image", name="upload.png")
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        scorer.score(np.zeros((8, 8), np.uint8))
    big = Scorer(checkpoint, cache_dir=tmp_path / "cache", max_pixels=100)
    with pytest.raises(DataError, match="too large"):
        big.score_bytes(png_bytes(np.zeros((20, 20, 3), np.uint8)))


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
