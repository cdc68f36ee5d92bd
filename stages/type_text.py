"""Stage `type_text`: the line typer learned from image labels, and every read line typed.

Reads the masks stage's ``lines.parquet`` and the manifests. The learned typers
(``privobfnet.text.learned``: ``learned`` on text features, ``both`` with the recognizers' scores
as features too) are trained on ``text.train_split``'s image labels alone (noisy-OR over each
image's lines), each threshold chosen on ``text.threshold_split``'s image labels. Every
line of every split is then typed with ``text.typing`` (``privobfnet.text.typer``). Where the data
set has segmentation ground truth (SynthPriv), line typing on ``text.eval_split`` is scored per
source (recognizers, learned, both) against each line's true attribute
(``privobfnet.evaluation.text_typing``), beside the always-ordinary baseline (F1 0); on SynthPriv
also on the lines that read a whole drawn string (``whole_lines``: typing apart from the reading
errors and the pieces occluders leave).

Writes ``<text.out_dir>/typer.npz`` (the learned typer: the CLI's ``--typer``),
``<text.out_dir>/typed_lines.parquet`` (image_id, line, text, type, score, source, scores as a
JSON string) and reports/metrics/type_text.json. A data set without a text attribute in its
mask-type table's entities (VOC, COCO) gets an empty typer and no typed line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ops.outputs import write_metrics
from ops.params import load_params
from ops.tracking import stage_run
from privobfnet.config import Config
from privobfnet.data.images import load_mask
from privobfnet.data.manifest import labels_matrix, read_manifest
from privobfnet.data.mask_types import read_entity_map
from privobfnet.data.synthpriv import drawn_texts
from privobfnet.evaluation.redaction import normalise
from privobfnet.evaluation.text_typing import line_truth, typing_scores
from privobfnet.io import atomic_path
from privobfnet.logs import configure_logging
from privobfnet.text.learned import (
    N_FEATURES,
    LearnedTyper,
    choose_threshold,
    features,
    save_typers,
    train_mil,
)
from privobfnet.text.lines import LINES_FILE, TYPED_LINES_FILE, read_lines
from privobfnet.text.recognizers import Recognizers, recognize_lines
from privobfnet.text.typer import TextTyper

STAGE = "type_text"
THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))
EVALUATED_SOURCES = ("recognizers", "learned", "both")


def main(cfg: Config) -> dict:
    """Train the learned typer, type every line, score typing; returns the metrics written."""
    settings = cfg.text
    out_dir = Path(settings.out_dir)
    with stage_run(STAGE, cfg) as run:
        start = time.perf_counter()
        manifests = {
            s: read_manifest(Path(cfg.data.manifest_dir) / f"{s}.parquet") for s in cfg.data.splits
        }
        run.log_manifests(
            cfg.data.manifest_dir,
            cfg.data.dataset,
            {settings.train_split: "training", settings.threshold_split: "threshold"},
        )
        class_names = list(next(iter(manifests.values())).attrs["class_names"])
        entity_map = {
            a: e for a, e in read_entity_map(cfg.data.dataset).items() if a in class_names
        }
        attributes = list(entity_map)
        lines = read_lines(Path(cfg.masks.out_dir) / LINES_FILE) if attributes else {}
        columns = [class_names.index(a) for a in attributes]

        recognizers = Recognizers() if attributes else None
        entities = {
            image_id: recognize_lines(recognizers, image_lines)
            for image_id, image_lines in lines.items()
        }

        def bags(split: str, with_entities: bool) -> list:
            rows = manifests[split]
            return [
                features(
                    lines.get(r.image_id, []),
                    int(r.height),
                    entities.get(r.image_id, []) if with_entities else None,
                )
                for r in rows.itertuples()
            ]

        def labels(split: str) -> np.ndarray:
            return labels_matrix(manifests[split])[:, columns].astype(np.float32)

        metrics: dict = {"attributes": attributes, "typing": settings.typing}
        learned: dict[str, LearnedTyper] = {}
        trainable = any(lines.get(i) for i in manifests[settings.train_split]["image_id"])
        for name, with_entities in (("learned", False), ("both", True)):
            if not trainable:  # no text attribute, or no line detected to learn from
                learned[name] = LearnedTyper(
                    tuple(attributes),
                    np.zeros((N_FEATURES, len(attributes)), np.float32),
                    np.full(len(attributes), -20.0),  # types nothing
                    0.5,
                    with_entities,
                )
                metrics[name] = {"trained": False, "reason": "no text attribute or no line read"}
                continue
            weights, bias = train_mil(
                bags(settings.train_split, with_entities),
                labels(settings.train_split),
                epochs=settings.epochs,
                lr=settings.lr,
                l2=settings.l2,
                seed=cfg.seed,
            )
            draft = LearnedTyper(tuple(attributes), weights, bias, 0.5, with_entities)
            rows = manifests[settings.threshold_split]
            threshold, image_f1 = choose_threshold(
                [
                    draft.probabilities(
                        lines.get(r.image_id, []),
                        int(r.height),
                        entities.get(r.image_id, []) if with_entities else None,
                    )
                    for r in rows.itertuples()
                ],
                labels(settings.threshold_split),
                THRESHOLD_GRID,
            )
            learned[name] = LearnedTyper(tuple(attributes), weights, bias, threshold, with_entities)
            metrics[name] = {
                "trained": True,
                "threshold": threshold,
                f"{settings.threshold_split}_image_macro_f1": round(image_f1, 4),
            }
        out_dir.mkdir(parents=True, exist_ok=True)
        save_typers(out_dir / "typer.npz", learned)
        typers = {
            source: TextTyper(entity_map, source=source, recognizers=recognizers, learned=learned)
            for source in EVALUATED_SOURCES
        }
        typed_rows = []
        for split, manifest in manifests.items():
            for r in manifest.itertuples():
                image_lines = lines.get(r.image_id, [])
                if settings.typing == "none" or not image_lines:
                    continue
                for i, typed in enumerate(typers[settings.typing](image_lines, int(r.height))):
                    kind = typed.type()
                    typed_rows.append(
                        {
                            "image_id": r.image_id,
                            "split": split,
                            "line": i,
                            "text": typed.line.text,
                            "type": kind,
                            "score": round(typed.scores[kind], 4) if kind else None,
                            "source": typed.sources[kind] if kind else None,
                            "scores": json.dumps(
                                {a: round(v, 4) for a, v in sorted(typed.scores.items())}
                            ),
                        }
                    )
        with atomic_path(out_dir / TYPED_LINES_FILE) as tmp:
            frame = pd.DataFrame(
                typed_rows,
                columns=["image_id", "split", "line", "text", "type", "score", "source", "scores"],
            )
            frame.to_parquet(tmp, index=False)
        metrics["typed_lines"] = {
            "lines": len(typed_rows),
            "typed_private": int(frame["type"].notna().sum()),
        }
        evaluation = evaluate_typing(cfg, manifests, lines, typers, attributes, class_names)
        if evaluation is not None:
            metrics[f"{settings.eval_split}_line_typing"] = evaluation
        write_metrics(STAGE, metrics, {"wall_seconds": round(time.perf_counter() - start, 1)})
        run.log_metrics(metrics)
        run.log_artifact(out_dir / "typer.npz", "text")
    return metrics


def evaluate_typing(cfg, manifests, lines, typers, attributes, class_names) -> dict | None:
    """Per source, line typing on the eval split against the ground truth (None without masks)."""
    rows = manifests[cfg.text.eval_split]
    if not attributes or rows["mask_path"].isna().all():
        return None
    values = {a: class_names.index(a) + 1 for a in attributes}
    truth, whole, predicted = [], [], {source: [] for source in typers}
    for r in rows.itertuples():
        image_lines = lines.get(r.image_id, [])
        if pd.isna(r.mask_path) or not image_lines:
            continue
        labels = load_mask(
            r.mask_path, n_classes=len(class_names), max_pixels=cfg.data.max_image_pixels
        )
        truth += line_truth(image_lines, labels, values)
        if cfg.data.dataset == "synthpriv":  # which lines read a whole drawn string
            drawn = [normalise(s) for _, s in drawn_texts(r.image_id, cfg, labels)]
            whole += [
                any(len(d) >= 4 and d in normalise(line.text) for d in drawn)
                for line in image_lines
            ]
        for source, typer in typers.items():
            predicted[source] += [t.type() for t in typer(image_lines, int(r.height))]
    out = {source: typing_scores(p, truth, attributes) for source, p in predicted.items()}
    out["baseline_always_ordinary"] = typing_scores([None] * len(truth), truth, attributes)
    if whole:  # the same on the lines that read a whole string: typing without reading errors
        keep = [i for i, w in enumerate(whole) if w]
        out["whole_lines"] = {
            source: typing_scores([p[i] for i in keep], [truth[i] for i in keep], attributes)
            for source, p in predicted.items()
        }
    return out


if __name__ == "__main__":
    configure_logging()
    main(load_params())
