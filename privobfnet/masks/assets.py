"""Model files the mask backends run: MediaPipe's, shipped inside the package; the shared cache folder.

MediaPipe's selfie-segmentation and face-detection ``.tflite`` files (Apache-2.0, 0.9 MB together)
were extracted once from the mediapipe 0.10.21 wheel (the last release that bundles its models;
the files are identical in every platform's wheel) and ship as package data in
``privobfnet/masks/models/`` (their origin and licence: NOTICE). mediapipe itself pins numpy<2, so
it is never installed; ai-edge-litert runs the files. Nothing is downloaded at run time: no pip,
no network, no platform tags.

Each file is checked by sha256 when first loaded in a process, so a damaged install fails with the
file's name instead of running a broken model.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from privobfnet.io import file_digest

MEDIAPIPE_VERSION = "0.10.21"  # the wheel the files come from
# file name -> (path inside that wheel, sha256)
MEDIAPIPE_MODELS = {
    "selfie_segmentation.tflite": (
        "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
    ),
    "face_detection_full_range_sparse.tflite": (
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    ),
}
CACHE_ENV = "PRIVOBFNET_CACHE_DIR"  # where other detector model files (PaddleOCR's) are cached


def default_cache_dir() -> str:
    """The one cache of detector model files, for the CLI and the stages alike: $PRIVOBFNET_CACHE_DIR,
    else $XDG_CACHE_HOME/privobfnet, else ~/.cache/privobfnet."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "privobfnet")


class AssetError(RuntimeError):
    """A packaged model file is missing or fails its checksum; the message names it and what to do."""


def models_dir() -> Path:
    """The package's folder of MediaPipe ``.tflite`` files (package data: plain files beside this
    module, in a wheel's install and an editable one alike)."""
    return Path(__file__).parent / "models"


@cache
def mediapipe_models() -> dict[str, Path]:
    """Paths of the packaged MediaPipe ``.tflite`` files, each checked by sha256 (once a process).

    Raises ``AssetError`` naming the file when one is missing or differs (a damaged install).
    """
    folder = models_dir()
    paths = {}
    for name, (member, sha) in MEDIAPIPE_MODELS.items():
        path = folder / name
        if not path.is_file():
            raise AssetError(
                f"{path}: missing; the privobfnet package ships it (from {member} of the mediapipe "
                f"{MEDIAPIPE_VERSION} wheel): reinstall privobfnet"
            )
        if file_digest(path) != sha:
            raise AssetError(
                f"{path}: sha256 differs from the pinned {sha} (damaged install?): reinstall privobfnet"
            )
        paths[name] = path
    return paths
