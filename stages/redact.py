"""Stage `redact`: the obfuscation tool on a held-out split with the default preferences (params
``redact``), against the model-free ``--hide-all`` baseline. See ``privobfnet.evaluation.redaction``
for the metrics (PII and face leak rates, over-redaction, coverage).

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
from privobfnet.data.synthpriv import generate_sample
from privobfnet.evaluation.redaction import RedactTally, faces_on, strings_read
from privobfnet.io import atomic_path
from privobfnet.masks import build_backend
from privobfnet.masks.assets import default_cache_dir
from privobfnet.obfuscate import (
    Detections,
    Detectors,
    Obfuscator,
    TextReader,
    load_model,
)
from privobfnet.viz import before_after_figure

STAGE = "redact"
FIGURE_PATH = figure("redact_examples")


def synthpriv_strings(
    cfg: Config, image_id: str, truth: np.ndarray | None
) -> list[tuple[str, str]]:
    """(attribute, string) drawn in a SynthPriv image, regenerated from its seed and checked."""
    split, index = image_id.rsplit("_", 1)
    sample = generate_sample(split, int(index), cfg)
    if truth is not None and not np.array_equal(sample.class_mask, truth):
        raise ValueError(
            f"{image_id}: regenerated ground truth differs from the stored one (seed or synthpriv "
            "params changed since the download stage?)"
        )
    return list(sample.texts)


def main(cfg: Config) -> dict:
    """Redact the split both ways, tally leaks and over-redaction; write metrics and figure."""
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
        chosen = [model.class_names.index(a) for a in settings.hide]
        face_classes = [c for c in chosen if model.mask_types[c] == "human"]
        text_classes = {model.class_names[c] for c in chosen if model.mask_types[c] == "text"}
        cache_dir = default_cache_dir()
        text = build_backend(
            "text",
            masks_cfg.text_backend,
            limit_side=masks_cfg.text_det_limit_side,
            margin_px=masks_cfg.text_margin_px,
            cache_dir=cache_dir,
        )
        faces = build_backend("face", "mediapipe", cache_dir=cache_dir)
        reader = TextReader(limit_side=settings.ocr_side)
        prefs = settings.preferences()  # what a user of the tool gets with these settings
        modes = {
            "model": Obfuscator(prefs, detectors=Detectors(), model=model),
            "hide_all": Obfuscator(
                replace(prefs, hide=(), hide_all=settings.baseline_hide_all), detectors=Detectors()
            ),
        }
        tallies = {mode: RedactTally() for mode in modes}
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
            detections = Detections(
                text_lines=text(image).polygons,
                faces=stored.face_boxes or (),
                person=human.astype(np.float32) / 255.0,
                text_mask=text_prior.astype(np.float32) / 255.0,
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
            truth = None if labels is None else np.isin(labels, [c + 1 for c in chosen])
            face_truth = None if labels is None else np.isin(labels, [c + 1 for c in face_classes])
            strings = (
                [s for a, s in synthpriv_strings(cfg, row.image_id, labels) if a in text_classes]
                if cfg.data.dataset == "synthpriv"
                else []
            )
            read_before = (
                strings_read(strings, [line.text for line in reader(image)]) if strings else []
            )
            faces_before = faces_on(faces(image).boxes, face_truth) if face_truth is not None else 0
            outputs = []
            for mode, obfuscator in modes.items():
                tick = time.perf_counter()
                outcome = obfuscator.process(image, detections=detections)
                seconds.append(time.perf_counter() - tick)
                read_after = (
                    strings_read(strings, [line.text for line in reader(outcome.image)])
                    if strings
                    else []
                )
                faces_after = (
                    faces_on(faces(outcome.image).boxes, face_truth) if faces_before else 0
                )
                tallies[mode].add(
                    strings=strings,
                    read_before=read_before,
                    read_after=read_after,
                    faces_before=faces_before,
                    faces_after=faces_after,
                    hidden=outcome.hidden.mask,
                    truth=truth,
                    valid=None if labels is None else labels != 255,
                )
                outputs.append((mode.replace("_", " "), outcome.image))
            weight = 0 if truth is None else int(truth.sum())
            examples.append((weight, row.image_id, image, outputs))
        metrics = {
            "split": settings.split,
            "images": len(rows),
            "hidden_attributes": list(settings.hide),
            "baseline_hide_all": list(settings.baseline_hide_all),
            "model": tallies["model"].metrics(),
            "hide_all": tallies["hide_all"].metrics(),
        }
        run_facts = {
            "compose_ms_median": round(1000 * float(np.median(seconds)), 2) if seconds else None,
            "wall_seconds": round(time.perf_counter() - start, 1),
        }  # differ run to run: not metrics
        write_metrics(STAGE, metrics, run_facts)
        run.log_metrics({**metrics, **run_facts})
        best = sorted(examples, key=lambda e: -e[0])[: settings.n_examples]
        with atomic_path(FIGURE_PATH) as tmp:
            before_after_figure([(i, img, outs) for _, i, img, outs in best]).savefig(
                tmp, format="png", dpi=120
            )
        run.log_artifact(FIGURE_PATH, "figures")
    return metrics


if __name__ == "__main__":
    main(load_params())
