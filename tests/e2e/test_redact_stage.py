"""The redact stage on the ci profile's SynthPriv with a tiny untrained ensemble: metrics, figure,
and the strings SynthPriv drew (regenerated and checked against the stored ground truth)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from privobfnet.config import parse_config
from privobfnet.data.manifest import read_manifest
from privobfnet.data.mask_types import load_mask_types
from privobfnet.masks.assets import CACHE_ENV
from privobfnet.models.checkpoints import ensemble_checkpoint, model_meta
from privobfnet.models.privobfnet import build_model
from stages import masks as masks_stage
from stages import redact as stage
from stages import type_text as type_text_stage
from tests.conftest import ci_params


def test_redact_stage_measures_leaks_and_over_redaction(
    synthpriv_data,
    tmp_path,
    monkeypatch,
    model_cache,
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CACHE_ENV, str(model_cache))
    params = ci_params(synthpriv_data)
    params["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params["masks"].update({"workers": 1, "out_dir": str(tmp_path / "masks")})
    cfg = parse_config(params)
    masks_stage.main(cfg)
    typing = type_text_stage.main(cfg)
    assert typing["attributes"] and (Path(cfg.text.out_dir) / "typer.npz").is_file()
    class_names = read_manifest(Path(cfg.data.manifest_dir) / "test.parquet").attrs["class_names"]
    types = load_mask_types("synthpriv", class_names)
    torch.manual_seed(0)
    nets = [
        build_model(
            backbone="tiny",
            tiny_width=8,
            pretrained=None,
            mask_types=types,
            background_channel=False,
            use_mask_weighting=True,
        )
        for _ in range(2)
    ]
    meta = model_meta(
        backbone="tiny",
        tiny_width=8,
        mask_types=types,
        class_names=class_names,
        background_channel=False,
        use_mask_weighting=True,
        input_size=cfg.train.input_size,
    )
    stage.ENSEMBLE_CHECKPOINT.parent.mkdir(parents=True)
    torch.save(ensemble_checkpoint(*nets, meta), stage.ENSEMBLE_CHECKPOINT)

    metrics = stage.main(cfg)
    assert metrics == json.loads(Path("reports/metrics/redact.json").read_text())
    assert (
        metrics["images"] == cfg.data.splits["test"]
        and Path(stage.FIGURE_PATH).stat().st_size > 10_000
    )
    baseline = metrics["hide_all"]
    assert (
        baseline["strings_total"] >= baseline["strings_readable_before"] > 0
    )  # the OCR reads SynthPriv's text
    assert baseline["pii_leak_rate"] <= 0.5  # every text line hidden: little stays readable
    assert 0 < baseline["over_redaction"] < 1 and 0 < baseline["coverage"] <= 1
    for key in ("pii_leak_rate", "over_redaction", "coverage"):
        assert metrics["model"][key] is None or 0 <= metrics["model"][key] <= 1
    # every text attribute alone, hide-all pii and the untyped model are measured beside it
    alone = {k.split(":", 1)[1] for k in metrics if k.startswith("alone:")}
    assert alone == set(typing["attributes"])
    assert {"hide_all_pii", "model_untyped"} <= set(metrics)
    ordinary = baseline["collateral_ordinary"]
    assert ordinary is None or ordinary >= 0.5  # --hide-all text hides ordinary text too
    typed = metrics["line_typing"]
    assert set(typed) == {"recognizers", "learned", "both", "baseline_always_ordinary"}
    assert typed["baseline_always_ordinary"]["macro_f1"] in (None, 0.0)
