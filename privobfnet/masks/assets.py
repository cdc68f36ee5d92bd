"""Model files the mask backends run: fetched once into a cache folder, checked by sha256.

MediaPipe's selfie-segmentation and face-detection ``.tflite`` files ship inside the mediapipe
0.10.21 wheel (the last release that bundles its models). mediapipe itself pins numpy<2, so it is
never installed: ``pip download`` fetches the wheel (a package registry is the only network a
fresh machine has), the files are extracted and checked, and ai-edge-litert runs them.

The wheel asked for is always the same one (fixed platform and Python tags), so its sha256 is
checked too; the ``.tflite`` files are identical in every platform's wheel.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from privobfnet.io import file_digest

MEDIAPIPE_VERSION = "0.10.21"
MEDIAPIPE_WHEEL = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
MEDIAPIPE_WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
# file name -> (path inside the wheel, sha256)
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
PIP_TIMEOUT_S = 600
CACHE_ENV = "PRIVOBFNET_CACHE_DIR"  # where the detector model files are cached


def default_cache_dir() -> str:
    """The one cache of detector model files, for the CLI and the stages alike: $PRIVOBFNET_CACHE_DIR,
    else $XDG_CACHE_HOME/privobfnet, else ~/.cache/privobfnet."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "privobfnet")


class AssetError(RuntimeError):
    """A model file could not be fetched or failed its checksum; the message says what to do."""


def _cached(cache_dir: Path) -> dict[str, Path] | None:
    paths = {name: cache_dir / name for name in MEDIAPIPE_MODELS}
    ok = all(
        p.is_file() and file_digest(p) == MEDIAPIPE_MODELS[name][1] for name, p in paths.items()
    )
    return paths if ok else None


def _pip_download(dest: Path) -> Path:
    """The pinned mediapipe wheel, downloaded with pip into ``dest``."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"mediapipe=={MEDIAPIPE_VERSION}",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_28_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "--disable-pip-version-check",
        "-d",
        str(dest),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        done = None
    wheel = dest / MEDIAPIPE_WHEEL
    if done is None or done.returncode != 0 or not wheel.is_file():
        tail = (
            "timed out"
            if done is None
            else " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        )
        raise AssetError(
            f"could not download mediapipe {MEDIAPIPE_VERSION} with pip (offline?): {tail}. "
            f"Where a network is available run `pip download mediapipe=={MEDIAPIPE_VERSION} --no-deps "
            f"--only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 -d DIR` and "
            f"extract {', '.join(MEDIAPIPE_MODELS)} from the wheel into the cache folder"
        )
    return wheel


def ensure_mediapipe_models(cache_dir: str | os.PathLike) -> dict[str, Path]:
    """Paths of the MediaPipe ``.tflite`` files in ``cache_dir``, fetched on first use.

    Safe to call from several processes: each file is checked, then renamed into place whole.
    Raises ``AssetError`` (naming the file and what to do) when offline or a checksum differs.
    """
    cache_dir = Path(cache_dir)
    found = _cached(cache_dir)
    if found:
        return found
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".mediapipe-", dir=cache_dir) as tmp:
        wheel = _pip_download(Path(tmp))
        if file_digest(wheel) != MEDIAPIPE_WHEEL_SHA256:
            raise AssetError(
                f"{wheel.name}: sha256 differs from the pinned {MEDIAPIPE_WHEEL_SHA256}"
            )
        with zipfile.ZipFile(wheel) as archive:
            for name, (member, sha) in MEDIAPIPE_MODELS.items():
                data = archive.read(member)
                if hashlib.sha256(data).hexdigest() != sha:
                    raise AssetError(f"{wheel.name}:{member}: sha256 differs from the pinned {sha}")
                part = Path(tmp) / name
                part.write_bytes(data)
                os.replace(part, cache_dir / name)
    found = _cached(cache_dir)
    if not found:  # a file was changed under us while we wrote it
        raise AssetError(f"{cache_dir}: model files fail their sha256 after download")
    return found
