"""The PaddleOCR text backend (extra `paddle`): the same PP-OCRv6 detector as rapidocr, through
PaddleX on onnxruntime. make test runs this file in its own environment, .venv-paddle, where
PaddleOCR is installed beside rapidocr without torch; elsewhere these tests skip."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from privobfnet.masks import build_backend
from privobfnet.masks.text import PADDLE_MODEL_NAME, rapidocr_model_path

pytestmark = pytest.mark.paddle


def page_rgb() -> np.ndarray:
    return np.stack([skdata.page()] * 3, axis=-1)  # (191, 384, 3)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def paddle(model_cache):
    return build_backend("text", "paddleocr", limit_side=320, margin_px=2, cache_dir=model_cache)


def test_paddleocr_builds_its_model_folder_from_the_rapidocr_wheel(paddle, model_cache):
    folder = model_cache / "paddleocr" / PADDLE_MODEL_NAME
    assert (folder / "inference.onnx").read_bytes() == rapidocr_model_path().read_bytes()
    assert "name: DBPostProcess" in (folder / "inference.yml").read_text()


def test_paddleocr_backend_matches_rapidocr(paddle):
    rapidocr = build_backend("text", "rapidocr", limit_side=320, margin_px=2, cache_dir="unused")
    ours, theirs = rapidocr(page_rgb()), paddle(page_rgb())
    assert len(theirs.boxes) == len(ours.boxes)
    ours, theirs = ours.mask > 0, theirs.mask > 0
    assert (ours & theirs).sum() / (ours | theirs).sum() > 0.95


def test_paddleocr_finds_nothing_on_a_blank_image(paddle):
    result = paddle(np.full((120, 200, 3), 255, np.uint8))
    assert result.mask.shape == (120, 200) and not result.mask.any() and result.boxes == ()
