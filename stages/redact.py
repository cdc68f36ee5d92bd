"""Stage `redact`: the obfuscation tool on a held-out split with the default preferences (params
``redact``), against the model without text typing and the model-free ``--hide-all`` baseline;
``--hide-all pii``; and each text attribute hidden alone without the model. See
``privobfnet.evaluation.redaction`` for the metrics (PII and face leak rates, collateral,
over-redaction, coverage); ``line_typing`` scores each typing source on the tool's own lines
against SynthPriv's ground truth (``privobfnet.evaluation.text_typing``).

The model gets the priors it was trained with (the masks stage's stored human and text masks, and
its face boxes); text lines for snapping come from the same OCR detector at the same settings.
Strings are known for SynthPriv (each image is regenerated from its seed and checked against its
stored ground truth); other data sets report no PII leak rate. Writes reports/metrics/redact.json
(reproducible), reports/runs/redact.json (timings) and reports/figures/redact_examples.png; the
redacted pixels stay in memory (lossless: PNG output would hold exactly them).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ops.outputs import ENSEMBLE_CHECKPOINT, figure, write_metrics
from ops.params import load_params
from ops.tracking import stage_run
from privobfnet.config import Config
from privobfnet.data.images import load_mask, load_rgb
from privobfnet.data.manifest import read_manifest
from privobfnet.data.priors import read_index, read_prior_masks
from privobfnet.data.synthpriv import drawn_texts
from privobfnet.evaluation.redaction import RedactTally, faces_on, strings_read
from privobfnet.evaluation.text_typing import line_truth, typing_scores
from privobfnet.io import atomic_path
from privobfnet.logs import configure_logging
from privobfnet.masks import build_backend
from privobfnet.masks.assets import default_cache_dir
from privobfnet.obfuscate import (
    Detections,
    Detectors,
    Obfuscator,
    TextReader,
    load_model,
)
from privobfnet.obfuscate.engine import build_typer
from privobfnet.viz import before_after_figure

STAGE = "redact"
FIGURE_PATH = figure("redact_examples")
TYPER_FILE = "typer.npz"  # the type_text stage's learned line typer, in text.out_dir
FIGURE_MODES = {"model": "model", "model_untyped": "model, untyped", "hide_all": "hide all"}


def modes(cfg: Config, model, typer) -> dict[str, tuple[Obfuscator, list[str]]]:
    """name -> (obfuscator, the attributes it is asked to hide) for every measured setting.

    ``model``: the default preferences (text typed with ``redact.text_typing``); ``model_untyped``:
    the same without text typing (the model's attention alone); ``hide_all``: the model-free
    baseline (``redact.baseline_hide_all``, asked for the default set); ``hide_all_pii``: every line
    typed as private text (asked for every typed attribute); ``alone:<attribute>``: each text
    attribute hidden alone, without the model (the recognizers and the learned typer).
    """
    prefs = cfg.redact.preferences()  # what a user of the tool gets with these settings
    out = {
        "model": (Obfuscator(prefs, detectors=Detectors(), model=model, typer=typer), prefs.hide),
        "model_untyped": (
            Obfuscator(replace(prefs, text_typing="none"), detectors=Detectors(), model=model),
            prefs.hide,
        ),
        "hide_all": (
            Obfuscator(
                replace(prefs, hide=(), hide_all=cfg.redact.baseline_hide_all),
                detectors=Detectors(),
            ),
            prefs.hide,
        ),
    }
    if typer is None:
        return out
    typed = [a for a in typer.attributes if a in model.class_names]
    out["hide_all_pii"] = (
        Obfuscator(replace(prefs, hide=(), hide_all=("pii",)), detectors=Detectors(), typer=typer),
        typed,
    )
    for attribute in typed:
        alone = replace(prefs, hide=(attribute,), hide_all=())
        out[f"alone:{attribute}"] = (
            Obfuscator(alone, detectors=Detectors(), typer=typer),
            [attribute],
        )
    return out


def main(cfg: Config) -> dict:
    """Redact the split every way, tally leaks, collateral and over-redaction; write metrics and figure."""
    settings, masks_cfg = cfg.redact, cfg.masks
    with stage_run(STAGE, cfg) as run:
        manifest = read_manifest(Path(cfg.data.manifest_dir) / f"{settings.split}.parquet")
        run.log_manifests(cfg.data.manifest_dir, cfg.data.dataset, {settings.split: "redaction"})
        rows = manifest if settings.max_images == 0 else manifest.head(settings.max_images)
        priors = read_index(masks_cfg.out_dir, rows["image_id"].tolist())
        model = load_model(ENSEMBLE_CHECKPOINT)
        missing = [a for a in settings.hide if a not in model.class_names]
        if missing:
            raise ValueError(
                f"redact.hide: {missing} are not attributes of the model ({model.class_names})"
            )
        typer_file = Path(cfg.text.out_dir) / TYPER_FILE
        typer = build_typer(settings.preferences(), model, typer_file)
        sources = {
            source: build_typer(
                replace(settings.preferences(), text_typing=source), model, typer_file
            )
            for source in ("recognizers", "learned", "both")
            if typer is not None and typer.entity_map
        }
        cache_dir = default_cache_dir()
        text = build_backend(
            "text",
            masks_cfg.text_backend,
            limit_side=masks_cfg.text_det_limit_side,
            margin_px=masks_cfg.text_margin_px,
            cache_dir=cache_dir,
            read_text=typer is not None,
        )
        faces = build_backend("face", "mediapipe", cache_dir=cache_dir)
        reader = TextReader(limit_side=settings.ocr_side)
        settings_of = modes(cfg, model, typer)
        tallies = {mode: RedactTally() for mode in settings_of}
        typing_truth, typing_predicted = [], {source: [] for source in sources}
        examples, seconds, start = [], [], time.perf_counter()
        for row in tqdm(
            list(rows.itertuples(index=False)), desc=STAGE, unit="img", mininterval=2.0
        ):
            image = load_rgb(row.path, max_pixels=cfg.data.max_image_pixels)
            shape = image.shape[:2]
            stored = priors[row.image_id]
            human, text_prior = read_prior_masks(
                stored, shape
            )  # (H, W) uint8, as the model trained
            found = text(image)
            detections = Detections(
                text_lines=found.polygons,
                faces=stored.face_boxes or (),
                person=human.astype(np.float32) / 255.0,
                text_mask=text_prior.astype(np.float32) / 255.0,
                lines=found.lines,
            )
            labels = (
                None
                if pd.isna(row.mask_path)
                else load_mask(
                    row.mask_path,
                    n_classes=len(model.class_names),
                    max_pixels=cfg.data.max_image_pixels,
                )
            )
            drawn = (
                drawn_texts(row.image_id, cfg, labels) if cfg.data.dataset == "synthpriv" else []
            )
            before = [line.text for line in reader(image)]
            boxes_before = faces(image).boxes
            read_before = strings_read([s for _, s in drawn], before)
            if labels is not None and sources:
                values = {a: model.class_names.index(a) + 1 for a in typer.entity_map}
                typing_truth += line_truth(found.lines, labels, values)
                for source, source_typer in sources.items():
                    typing_predicted[source] += [
                        t.type() for t in source_typer(found.lines, shape[0])
                    ]
            outputs = []
            for mode, (obfuscator, hidden_attributes) in settings_of.items():
                chosen = [model.class_names.index(a) for a in hidden_attributes]
                face_classes = [c for c in chosen if model.mask_types[c] == "human"]
                truth = None if labels is None else np.isin(labels, [c + 1 for c in chosen])
                face_truth = (
                    None if labels is None else np.isin(labels, [c + 1 for c in face_classes])
                )
                faces_before = faces_on(boxes_before, face_truth) if face_truth is not None else 0
                tick = time.perf_counter()
                outcome = obfuscator.process(image, detections=detections)
                seconds.append(time.perf_counter() - tick)
                read_after = (
                    strings_read(
                        [s for _, s in drawn], [line.text for line in reader(outcome.image)]
                    )
                    if drawn
                    else []
                )
                picked = [a in hidden_attributes for a, _ in drawn]
                faces_after = (
                    faces_on(faces(outcome.image).boxes, face_truth) if faces_before else 0
                )
                tallies[mode].add(
                    strings=[s for (_, s), p in zip(drawn, picked) if p],
                    read_before=[b for b, p in zip(read_before, picked) if p],
                    read_after=[a for a, p in zip(read_after, picked) if p],
                    faces_before=faces_before,
                    faces_after=faces_after,
                    hidden=outcome.hidden.mask,
                    truth=truth,
                    valid=None if labels is None else labels != 255,
                    others=[
                        (a is not None, b, r)
                        for (a, _), b, r, p in zip(drawn, read_before, read_after, picked)
                        if not p
                    ],
                )
                if mode in FIGURE_MODES:
                    outputs.append((FIGURE_MODES[mode], outcome.image))
            weight = (
                0
                if labels is None
                else int(
                    np.isin(labels, [1 + model.class_names.index(a) for a in settings.hide]).sum()
                )
            )
            examples.append((weight, row.image_id, image, outputs))
        metrics = {
            "split": settings.split,
            "images": len(rows),
            "hidden_attributes": list(settings.hide),
            "baseline_hide_all": list(settings.baseline_hide_all),
            "text_typing": settings.text_typing,
            "type_threshold": settings.type_threshold,
            **{mode: tally.metrics() for mode, tally in tallies.items()},
        }
        if typing_truth:
            attributes = list(typer.entity_map)
            metrics["line_typing"] = {
                source: typing_scores(p, typing_truth, attributes)
                for source, p in typing_predicted.items()
            }
            metrics["line_typing"]["baseline_always_ordinary"] = typing_scores(
                [None] * len(typing_truth), typing_truth, attributes
            )
        run_facts = {
            "compose_ms_median": round(1000 * float(np.median(seconds)), 2) if seconds else None,
            "wall_seconds": round(time.perf_counter() - start, 1),
        }  # differ run to run: not metrics
        write_metrics(STAGE, metrics, run_facts)
        run.log_metrics({k: v for k, v in metrics.items() if ":" not in k})
        run.log_metrics(run_facts)
        best = sorted(examples, key=lambda e: -e[0])[: settings.n_examples]
        with atomic_path(FIGURE_PATH) as tmp:
            before_after_figure([(i, img, outs) for _, i, img, outs in best]).savefig(
                tmp, format="png", dpi=120
            )
        run.log_artifact(FIGURE_PATH, "figures")
    return metrics


if __name__ == "__main__":
    configure_logging()
    main(load_params())
