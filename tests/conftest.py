"""Shared fixtures: tiny params (the ci profile) pointing every output into tmp_path."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from ops.params import resolve_profile
from privobfnet.config import Config, parse_config

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_addoption(parser):
    parser.addoption(
        "--require-paddle",
        action="store_true",
        help="tests marked paddle fail instead of skipping when PaddleOCR is missing "
        "(make test runs them so in .venv-paddle)",
    )


def pytest_collection_modifyitems(config, items):
    """Tests marked paddle skip where PaddleOCR is not installed (the main venv), unless --require-paddle."""
    if config.getoption("--require-paddle") or importlib.util.find_spec("paddleocr") is not None:
        return
    skip = pytest.mark.skip(
        reason="PaddleOCR is the `paddle` extra, in its own venv: make test-paddle"
    )
    for item in items:
        if item.get_closest_marker("paddle"):
            item.add_marker(skip)


TRACKING_ENV = ("MLFLOW_TRACKING_URI", "PRIVOBFNET_PIPELINE_ID", "PRIVOBFNET_ROOT", "DVC_EXP_NAME")


@pytest.fixture(autouse=True)
def _isolated_tracking(monkeypatch):
    """No test may write to the developer's own MLflow store or pipeline id.

    ``mlflow.set_tracking_uri`` exports MLFLOW_TRACKING_URI for child processes, so it is also
    removed after each test: a module-scoped fixture of the next test would otherwise start its
    stage subprocesses with the previous test's store.
    """
    for name in TRACKING_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    for name in TRACKING_ENV:
        os.environ.pop(name, None)


def ci_params(tmp_path: Path, **overrides) -> dict:
    """The ci profile as a params mapping, with data, manifests and MLflow under tmp_path."""
    params = resolve_profile("ci", REPO / "profiles")
    params["data"]["raw_dir"] = str(tmp_path / "data" / "raw")
    params["data"]["manifest_dir"] = str(tmp_path / "data" / "manifests")
    params["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for section, values in overrides.items():
        params[section].update(values) if isinstance(values, dict) else params.__setitem__(
            section, values
        )
    return params


@pytest.fixture
def ci_config(tmp_path) -> Config:
    """Typed ci-profile config writing only under tmp_path."""
    return parse_config(ci_params(tmp_path))


def copy_project(root: Path, profile: str = "ci") -> Path:
    """A throw-away copy of the project (code, dvc.yaml, profiles) at ``root`` as a git + DVC repo.

    Its params.yaml is ``profile`` with MLflow in the copy's own sqlite store (project root).
    """
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    skip = (
        "params.yaml",
        "dvc.lock",
        "reports/metrics/",
        "reports/runs/",
        "reports/figures/",
        "reports/validation",
    )
    for rel in filter(None, listed):
        if rel.startswith(skip) or not (REPO / rel).is_file():
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=root)  # noqa: E731
    run("git", "init", "-q")
    run("git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    run("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "fixture")
    run(sys.executable, "-m", "tools.use_profile", profile)
    return root


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A throw-away ci-profile copy of the project (``copy_project``); cwd set to it."""
    root = copy_project(tmp_path / "project")
    monkeypatch.chdir(root)
    return root


def unmasked_record(image_id: str, path, width: int, height: int) -> dict:
    """A manifest record of a train image labelled (a0_safe, a9_face_complete) = (0, 1), score 0.5,
    without a ground-truth mask: what the split tests build their manifests from."""
    return {
        "image_id": image_id,
        "path": str(path),
        "split": "train",
        "labels": [0, 1],
        "privacy_score": 0.5,
        "mask_path": None,
        "width": width,
        "height": height,
    }


def with_changes(cfg: Config, section: str, **changes) -> Config:
    """A copy of cfg with fields of one section replaced."""
    return dataclasses.replace(
        cfg, **{section: dataclasses.replace(getattr(cfg, section), **changes)}
    )


def dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the venv's DVC in the cwd with the venv first on PATH (stages run `python -m ...`)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, env=env
    )
    if check and done.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


@contextmanager
def local_http_server(handler, **attributes) -> Iterator[ThreadingHTTPServer]:
    """A threaded HTTP server on 127.0.0.1 (a free port, ``.url``) with ``attributes`` set on it."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    for name, value in attributes.items():
        setattr(httpd, name, value)
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """One detector model cache for the session (PaddleOCR's models; MediaPipe's ship in the package)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def synthpriv_data(tmp_path_factory) -> Path:
    from privobfnet.data.manifest import write_manifest
    from privobfnet.data.readers import dataset_root, read_dataset
    from privobfnet.data.synthpriv import write_synthpriv

    """The ci profile's SynthPriv and its manifests, made once for the module (never modified)."""
    base = tmp_path_factory.mktemp("synthpriv")
    cfg = parse_config(ci_params(base))
    write_synthpriv(Path(dataset_root(cfg.data)), cfg, progress=False)
    for split, frame in read_dataset(cfg.data).items():
        Path(cfg.data.manifest_dir).mkdir(parents=True, exist_ok=True)
        write_manifest(frame, Path(cfg.data.manifest_dir) / f"{split}.parquet")
    return base
