"""The registered ensemble: a pyfunc model that answers as the checkpoint, served by MLflow, and the
champion alias that only a model not worse on val attribute mAP takes."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from skimage import data as skdata

import privobfnet.cli as cli
from ops.registry import (
    CHAMPION,
    ENSEMBLE_MODEL,
    SELECTION_TAG,
    champion_version,
    register_ensemble,
)
from ops.served_model import INPUT_COLUMN, SCORE_COLUMN
from privobfnet.models.checkpoints import ensemble_checkpoint, model_meta
from privobfnet.models.privobfnet import build_model
from privobfnet.serving import Scorer
from tests.fixtures.documents import render_document
from tests.fixtures.models import ATTRIBUTES
from tools.ui_check import free_port, start

MASK_TYPES = ["no_region", "human", "text"]  # both priors: the person mask and the text lines


def tiny_checkpoint(path: Path, seed: int) -> Path:
    """An untrained tiny ensemble that takes both priors (a different network per seed)."""
    torch.manual_seed(seed)
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
        dataset="synthpriv",
    )
    torch.save(ensemble_checkpoint(*nets, meta), path)
    return path


def evaluate_metrics(val_map: float) -> dict:
    """The shape of reports/metrics/evaluate.json, with the given val attribute mAP."""
    return {
        "splits": ["val", "test"],
        "attributes": {
            split: {"map": val_map, "mean_accuracy": 0.8, "ap": {a: val_map for a in ATTRIBUTES}}
            for split in ("val", "test")
        },
        "privacy": {s: {"l1": 0.1, "pearson": 0.8, "spearman": 0.7} for s in ("val", "test")},
        "baselines": {
            s: {"constant_map": 0.2, "always_absent_mean_accuracy": 0.7, "mean_score_l1": 0.25}
            for s in ("val", "test")
        },
    }


def use_store(root: Path, experiment: str) -> str:
    """A sqlite store in ``root`` with one experiment whose artifacts stay in ``root``."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment(experiment, artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_name=experiment)
    return uri


def register(checkpoint: Path, val_map: float, cache: Path) -> dict:
    with mlflow.start_run() as run:
        return register_ensemble(
            run.info,
            checkpoint=checkpoint,
            metrics=evaluate_metrics(val_map),
            profile="ci",
            headline_split="test",
            cache_dir=cache,
        )


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """A photo of a person and a document with text lines, as files."""
    folder = tmp_path_factory.mktemp("images")
    astronaut = np.asarray(Image.fromarray(skdata.astronaut()).resize((160, 160)))
    paths = [folder / "astronaut.png", folder / "document.png"]
    paths[0].write_bytes(png(astronaut))
    paths[1].write_bytes(png(render_document()[0]))
    return paths


@pytest.fixture(scope="module")
def store(tmp_path_factory, model_cache):
    """One registered version of a tiny ensemble in a fresh sqlite store."""
    root = tmp_path_factory.mktemp("registry")
    uri = use_store(root, "registry-test")
    checkpoint = tiny_checkpoint(root / "final.pt", seed=0)
    entry = register(checkpoint, 0.5, model_cache)
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # set_tracking_uri exports it
    return {"uri": uri, "checkpoint": checkpoint, "entry": entry, "root": root}


def expected(checkpoint: Path, cache: Path, paths: list[Path]) -> pd.DataFrame:
    """What the checkpoint gives through the library's scoring path (``privobfnet score``'s)."""
    scorer = Scorer(checkpoint, cache_dir=cache)
    rows = []
    for path in paths:
        prediction = scorer.score_file(path)
        rows.append([prediction.privacy_score, *prediction.attribute_probs.tolist()])
    return pd.DataFrame(rows, columns=[SCORE_COLUMN, *ATTRIBUTES])


def test_the_pyfunc_model_answers_as_the_checkpoint_and_the_command(
    store, images, model_cache, capsys, tmp_path
):
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(f"models:/{ENSEMBLE_MODEL}@{CHAMPION}")
    inputs = model.metadata.get_input_schema().to_dict()
    assert inputs == [{"type": "binary", "name": INPUT_COLUMN, "required": True}]
    assert model.metadata.get_output_schema().input_names() == [SCORE_COLUMN, *ATTRIBUTES]
    frame = pd.DataFrame({INPUT_COLUMN: [p.read_bytes() for p in images]})
    answer = model.predict(frame)
    truth = expected(store["checkpoint"], model_cache, images)
    pd.testing.assert_frame_equal(answer, truth, check_exact=True)
    assert (answer[SCORE_COLUMN].between(0, 1)).all()

    # `privobfnet score` on the same files, from the same registered model (rounded to 4 places)
    status = cli.main(
        [
            "score",
            *map(str, images),
            "--model",
            f"models:/{ENSEMBLE_MODEL}@{CHAMPION}",
            "--tracking-uri",
            store["uri"],
            "--cache-dir",
            str(model_cache),
            "--json",
        ]
    )
    rows = json.loads(capsys.readouterr().out)
    assert status == 0
    for row, (_, want) in zip(rows, truth.iterrows()):
        assert row["privacy_score"] == pytest.approx(want[SCORE_COLUMN], abs=5e-5)
        assert row["attributes"] == pytest.approx(dict(want[list(ATTRIBUTES)]), abs=5e-5)


def test_the_model_is_logged_from_code_with_its_checkpoint_and_detector_files(store):
    """The detectors' MediaPipe files travel as the package's own data (its code path)."""
    mlflow.set_tracking_uri(store["uri"])
    local = Path(
        mlflow.artifacts.download_artifacts(f"models:/{ENSEMBLE_MODEL}/{store['entry']['version']}")
    )
    pyfunc = mlflow.models.Model.load(str(local)).flavors["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert not list(local.rglob("*.pkl")), "a pickled python model"
    checkpoint = local / pyfunc["artifacts"]["checkpoint"]["path"]
    assert checkpoint.read_bytes() == store["checkpoint"].read_bytes()
    assert torch.load(checkpoint, weights_only=True)["meta"]["class_names"] == list(ATTRIBUTES)
    assert list(local.rglob("privobfnet/masks/models/selfie_segmentation.tflite"))
    assert (local / "input_example.json").is_file()
    requirements = (local / "requirements.txt").read_text().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements
    assert any(r.startswith("rapidocr==") for r in requirements)


def test_bad_input_names_the_column_and_the_row(store):
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(f"models:/{ENSEMBLE_MODEL}@{CHAMPION}")
    with pytest.raises(Exception, match=r"image\[1\]: not a readable image"):
        model.predict(pd.DataFrame({INPUT_COLUMN: [png(render_document()[0]), b"not an image"]}))


def test_the_champion_moves_only_to_a_model_not_worse_on_val_map(tmp_path, model_cache):
    use_store(tmp_path, "champion-test")
    client = mlflow.MlflowClient()
    first = register(tiny_checkpoint(tmp_path / "first.pt", seed=0), 0.5, model_cache)
    assert first["champion"]["promoted"] and first["champion"]["previous"] is None
    first_card = client.get_registered_model(ENSEMBLE_MODEL).description
    assert (
        f"version {first['version']}" in first_card
        and "| attribute mAP | val | 0.500 |" in first_card
    )

    worse = register(tiny_checkpoint(tmp_path / "worse.pt", seed=1), 0.4, model_cache)
    assert not worse["champion"]["promoted"] and worse["champion"]["previous"] == 0.5
    assert str(champion_version(ENSEMBLE_MODEL).version) == first["version"]
    assert client.get_registered_model(ENSEMBLE_MODEL).description == first_card
    assert client.get_model_version(ENSEMBLE_MODEL, worse["version"]).tags[SELECTION_TAG] == "0.4"

    better = register(tiny_checkpoint(tmp_path / "better.pt", seed=2), 0.6, model_cache)
    assert better["champion"]["promoted"]
    assert str(champion_version(ENSEMBLE_MODEL).version) == better["version"]
    card = client.get_registered_model(ENSEMBLE_MODEL).description
    assert f"version {better['version']}" in card and "| attribute mAP | val | 0.600 |" in card
    assert "0.200 (constant score)" in card  # the baseline beside the number
    assert "## Known limits" in card and "Small faces" in card


def wait_for(url: str, server: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Until ``url`` answers 200; fails early, with the server's last lines, if it exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise AssertionError(f"the server exited with status {server.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


def stop(server: subprocess.Popen) -> None:
    """The server and its workers (its own process group), if still running."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.mark.slow
def test_mlflow_models_serve_answers_as_the_checkpoint(store, images, model_cache, tmp_path):
    """`mlflow models serve` on the champion, one POST to /invocations (binary column as base64)."""
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # the server runs uvicorn from the venv's bin
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store["uri"],
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
    }
    mlflow_cli = str(Path(bin_dir, "mlflow"))
    server = start(
        [
            mlflow_cli,
            "models",
            "serve",
            "-m",
            f"models:/{ENSEMBLE_MODEL}@{CHAMPION}",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env,
        tmp_path / "serve.log",
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", server, tmp_path / "serve.log", timeout_s=90)
        body = {
            "dataframe_split": {
                "columns": [INPUT_COLUMN],
                "data": [[base64.b64encode(p.read_bytes()).decode()] for p in images],
            }
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = pd.DataFrame(json.loads(response.read())["predictions"])
    finally:
        stop(server)
    truth = expected(store["checkpoint"], model_cache, images)
    assert list(answer.columns) == [SCORE_COLUMN, *ATTRIBUTES]
    np.testing.assert_allclose(answer.to_numpy(), truth.to_numpy(), rtol=0, atol=1e-12)
