"""The package as others install it: the built wheel in a fresh virtual environment, no extras.

It holds the library only (no ``stages``, ``ops``, ``pipelines`` or ``tools``) with MediaPipe's
model files, installs without the MLOps stack, and its ``privobfnet`` command, with pip removed
from the environment, hides faces and text in a real photo, writing a file others can read (the
umask's mode) and no metadata.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

import privobfnet
from privobfnet.masks.assets import MEDIAPIPE_MODELS
from tests.conftest import REPO

PIPELINE_PACKAGES = (
    "pandas",
    "mlflow",
    "dvc",
    "prefect",
    "great_expectations",
    "dask",
    "playwright",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("privobfnet-*.whl")
    return found


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel) -> Path:
    """A new venv with the wheel alone (its dependencies at constraints.txt's versions)."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(REPO / "constraints.txt"), str(wheel)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    yield venv
    shutil.rmtree(venv, ignore_errors=True)  # ~6 GB with torch


def test_the_wheel_holds_the_library_only(wheel):
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
        entry_points = archive.read(
            f"privobfnet-{privobfnet.__version__}.dist-info/entry_points.txt"
        )
        models = {
            name: hashlib.sha256(archive.read(f"privobfnet/masks/models/{name}")).hexdigest()
            for name in MEDIAPIPE_MODELS
        }
    assert top == {"privobfnet", f"privobfnet-{privobfnet.__version__}.dist-info"}
    assert b"privobfnet = privobfnet.cli:main" in entry_points
    assert models == {name: sha for name, (_, sha) in MEDIAPIPE_MODELS.items()}  # package data


def test_a_fresh_install_hides_faces_and_text_in_a_photo(fresh_venv, tmp_path):
    python, command = fresh_venv / "bin" / "python", fresh_venv / "bin" / "privobfnet"
    # without pip and with an empty model cache: the detectors' files ship in the packages
    subprocess.run([str(python), "-m", "pip", "uninstall", "--yes", "--quiet", "pip"], check=True)
    cache = tmp_path / "cache"
    env = {**os.environ, "PRIVOBFNET_CACHE_DIR": str(cache)}
    env.pop("PYTHONPATH", None)
    for args in ([str(command), "--version"], [str(python), "-m", "privobfnet", "--version"]):
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.stdout.strip() == f"privobfnet {privobfnet.__version__}", done.stderr
    probe = "import importlib.util as u; print([m for m in %r if u.find_spec(m)])" % (
        PIPELINE_PACKAGES,
    )
    assert subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                          env=env, cwd=tmp_path).stdout.strip() == "[]"  # fmt: skip

    photo = tmp_path / "astronaut.jpg"
    exif = Image.Exif()
    exif[0x010F], exif[0x0132] = "TestCam", "2026:01:01 10:00:00"  # Make, DateTime
    Image.fromarray(skdata.astronaut()).save(photo, exif=exif.tobytes(), quality=95)
    old = os.umask(0o022)
    try:
        done = subprocess.run(
            [str(command), "obfuscate", str(photo), "--out", str(tmp_path / "out"),
             "--hide-all", "faces,text", "--no-progress"],
            capture_output=True, text=True, env=env, cwd=tmp_path,
        )  # fmt: skip
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out" / "astronaut.jpg"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # readable by others, as the umask says
    with Image.open(out) as written:
        assert not written.getexif() and "exif" not in written.info
        pixels = np.asarray(written.convert("RGB"))
    assert (np.abs(pixels.astype(int) - skdata.astronaut()).max(axis=2) > 60).mean() > 0.01  # hid
    assert not cache.exists()  # nothing fetched
