"""reports/tables.md: the paper's Tables 2-5 with the paper's numbers beside ours (pure: dicts in, Markdown out).

Ours come from the metrics of one pipeline run (evaluate, pseudo_labels) and, for the Table 4
ablation and the fully supervised ceiling, from the finished experiments that `make ablation`
collected into reports/ablation.json. Where `make seeds` ran a configuration with several seeds,
its numbers are their mean ± sample std (``privobfnet.report.seeds``), a compared row carries its
t-test's p and n (paired on shared seeds), and a difference with p >= 0.05 is marked n.s. Each
table states its protocol and its class list; missing rows say how to fill them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from privobfnet.config import Config
from privobfnet.data.privacy import privacy_protocol
from privobfnet.report import paper
from privobfnet.report.rows import ENSEMBLE, SINGLE, TABLE4
from privobfnet.report.seeds import (
    NOT_SIGNIFICANT,
    Spread,
    dig,
    format_spread,
    mark,
    one_per_seed,
    over_seeds,
    spread,
)


def _fmt(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _init(pretrained) -> str:
    return "ImageNet" if pretrained else "random (from scratch)"


def _protocol(cfg: Config, split: str, extra: str = "", *, classes: list[str], kind: str) -> str:
    train, deeplab = cfg.train, cfg.deeplab
    listed = (
        ", ".join(f"`{c}`" for c in classes)
        if classes
        else "not in the metrics (re-run the pipeline)"
    )
    saliency = (
        "saliency maps placed in Sal/ (gating the classes without a prior mask in L2G's crop target)"
        if cfg.masks.saliency
        else "saliency maps none (only the classes with a human or text mask are gated)"
    )
    return (
        f"*Protocol:* data set `{cfg.data.dataset}` (profile `{cfg.profile}`), split `{split}`; "
        f"ensemble backbone `{train.backbone}` init {_init(train.pretrained)}, input {train.input_size}, "
        f"{train.n_crops} crops of {train.crop_size}; "
        f"DeepLabV2 `{deeplab.backbone}` init {_init(deeplab.pretrained)}; "
        f"pseudo-label CRF {'on' if cfg.pseudo_labels.crf else 'off'}, DeepLab test-time CRF "
        f"{'on' if deeplab.crf else 'off'}, {saliency}, DeepLab scales "
        f"{', '.join(str(x) for x in [1.0, *deeplab.msc_scales])}; seed {cfg.seed}.{extra} "
        f"{privacy_protocol(cfg.data.dataset, profile=cfg.data.privacy_profile, rescale=cfg.data.privacy_rescale)} "
        f"*{kind} classes* ({len(classes)}): {listed}. {SEEDS_NOTE}"
    )


# the privacy score's scale by data.privacy_rescale (privobfnet.data.privacy)
# (the range, rating points per unit of score)
SCORE_SCALES = {
    "unit": ("[0, 1], the 1-5 rating as (x - 1) / 4", 4.0),
    "vpa": ("[-0.6, 1], the 1-5 rating as (x - 2.5) / 2.5", 2.5),
}

SEEDS_NOTE = (
    "Ours with several seeds (`make seeds`): mean ± sample std (n seeds). A row compared with another "
    "carries a two-sided t-test's p: paired on the seeds both share (`scipy.stats.ttest_rel`), Welch's "
    f"where they share fewer than two, one-sample against a single number; {NOT_SIGNIFICANT}: p >= 0.05."
)


def _variant(experiment: dict, cfg: Config) -> tuple:
    """How an experiment trained Model-Cropped: (crop target, crop size, loss weights); the profile's where it did
    not record them (a row collected before they could vary)."""
    train = cfg.train
    return (
        experiment.get("crop_target") or train.crop_target,
        experiment.get("crop_size") or train.crop_size,
        tuple(sorted((experiment.get("loss_weights") or train.loss_weights).items())),
        experiment.get("priors") or train.priors,
    )


def _matches(
    experiments: list[dict], switches: dict[str, bool], cfg: Config, variant: Optional[tuple] = None
) -> list[dict]:
    """The finished pseudo-label experiments with these switches (mask weighting on) that trained Model-Cropped as
    ``variant`` (default: as the profile does), all seeds."""
    variant = variant or _variant({}, cfg)
    return [
        e
        for e in experiments
        if e["deeplab_labels"] != "ground_truth"
        and e["switches"]["use_mask_weighting"]
        and _variant(e, cfg) == variant
        and all(e["switches"][k] == v for k, v in switches.items())
    ]


def _deeplab_miou(cfg: Config, split: str) -> Callable[[dict], Optional[float]]:
    """Reads an experiment's DeepLab mIoU on ``split``, where it trained DeepLab for the profile's iterations (a row
    that does not record them was collected when collection still required the profile's); None elsewhere."""

    def read(experiment: dict) -> Optional[float]:
        if experiment.get("deeplab_iterations", cfg.deeplab.iterations) != cfg.deeplab.iterations:
            return None
        return dig(experiment, "segmentation", split, "miou")

    return read


def _deeplab_note(cfg: Config) -> str:
    return (
        f"DeepLab numbers come only from runs at the profile's {cfg.deeplab.iterations} DeepLab iterations; a "
        "run at other iterations (collected before the profile changed them) still gives its CAM, attribute and "
        "privacy numbers."
    )


def _ours(
    group: list[dict],
    read: Callable[[dict], Optional[float]],
    workspace: Any = None,
    use_workspace: bool = False,
) -> Optional[Spread]:
    """A number of ours: over the group's seeds where it has several (or no workspace run), else the workspace's."""
    if len(one_per_seed(group)) >= 2 or not use_workspace:
        return over_seeds(group, read)
    return spread([workspace])


def attribute_classes(evaluate: dict, split: str) -> list[str]:
    """The attributes the attribute and privacy tasks were scored on, as the metrics name them."""
    return list(evaluate.get("attributes", {}).get(split, {}).get("accuracy", {}))


def segmentation_class_list(evaluate: dict, pseudo: dict) -> list[str]:
    """Background and the segmentation classes, as the pseudo-label (or DeepLab) metrics name them."""
    if pseudo.get("classes"):
        return list(pseudo["classes"])
    for scores in [*pseudo.get("splits", {}).values(), *evaluate.get("segmentation", {}).values()]:
        if scores.get("per_class_iou"):
            return list(scores["per_class_iou"])
    return []


def _baseline(evaluate: dict, split: str, key: str, scale: float, digits: int) -> str:
    """A trivial baseline of evaluate.json (``baselines.<split>.<key>``), or how to get it."""
    value = evaluate.get("baselines", {}).get(split, {}).get(key)
    return "missing (re-run `evaluate`)" if value is None else _fmt(value, scale, digits)


def table2(cfg: Config, evaluate: dict, experiments: list[dict]) -> str:
    split = cfg.train.eval_split
    scale, points = SCORE_SCALES[cfg.data.privacy_rescale]
    ours = evaluate.get("privacy", {}).get(split, {})
    rows = [
        [name, _fmt(l1), _fmt(p), _fmt(s)]
        for name, (l1, p, s) in paper.TABLE2_PRIVACY_SCORE.items()
    ]
    ensemble = _matches(experiments, ENSEMBLE, cfg)
    single = _matches(experiments, SINGLE, cfg)
    keys = ("l1", "pearson", "spearman")
    ens = {
        k: _ours(ensemble, lambda e, k=k: dig(e, "privacy", split, k), ours.get(k), True)
        for k in keys
    }
    rows.append(
        [
            f"**PrivObfNet, ours** ({cfg.data.dataset} {split})",
            *(format_spread(ens[k]) for k in keys),
        ]
    )
    if single:
        one = {k: over_seeds(single, lambda e, k=k: dig(e, "privacy", split, k)) for k in keys}
        rows.append(
            [
                f"ours: single model, Model-Cropped off ({split})",
                *(mark(one[k], ens[k]) for k in keys),
            ]
        )
    rows.append(
        [
            f"trivial baseline: the training split's mean score for every image ({split})",
            _baseline(evaluate, split, "mean_score_l1", 1, 2),
            "-",
            "-",
        ]
    )
    return "\n\n".join(
        [
            "## Table 2: privacy score (L1 error / Pearson / Spearman)",
            _table(["method", "L1", "Pearson", "Spearman"], rows),
            "Paper rows: VISPR test set; the paper does not state its score's scale. Ours: the L1 "
            f"error is on the scale the scores are trained on, {scale} (an L1 of 0.1 is "
            f"{0.1 * points:.2g} rating points). "
            + _protocol(cfg, split, classes=attribute_classes(evaluate, split), kind="Attribute"),
        ]
    )


def table3(cfg: Config, evaluate: dict, experiments: list[dict]) -> str:
    split = cfg.train.eval_split
    ours = evaluate.get("attributes", {}).get(split, {})
    paper_rows = [
        [name, _fmt(acc, digits=1)] for name, acc in paper.TABLE3_ATTRIBUTE_ACCURACY.items()
    ]
    paper_rows.append(["**mean**", _fmt(paper.TABLE3_MEAN_ACCURACY, digits=1)])
    ensemble = _matches(experiments, ENSEMBLE, cfg)
    single = _matches(experiments, SINGLE, cfg)

    def attr(group, keys, workspace=None, use_workspace=False):
        return _ours(group, lambda e: dig(e, "attributes", split, *keys), workspace, use_workspace)

    our_rows = [
        [f"`{name}`", format_spread(attr(ensemble, ("accuracy", name), acc, True), 100, 1)]
        for name, acc in ours.get("accuracy", {}).items()
    ]
    frequent = ours.get("frequent_attributes")
    minimum = ours.get("frequent_min_train_images")

    def frequent_mean(experiment: dict) -> Optional[float]:
        """An experiment's mean accuracy over this run's frequent attributes (the data are the
        same in every seed's run; experiments collected before the mean existed have the parts)."""
        parts = [dig(experiment, "attributes", split, "accuracy", n) for n in frequent or []]
        return sum(parts) / len(parts) if parts and None not in parts else None

    def metric(key: str) -> Callable[[dict], Optional[float]]:
        return lambda e: dig(e, "attributes", split, key)

    frequent_label = (
        f"**mean, attributes with > {minimum:g} training images**"
        if frequent is not None and minimum is not None
        else None
    )
    # (label, the single model's row label, an experiment's number, the workspace's number)
    summary = [
        (
            f"{frequent_label} (the paper's mean: > 300 of VISPR's 10,000; here {len(frequent)})"
            if frequent_label
            else "**mean, frequent attributes**: missing (re-run `evaluate`)",
            frequent_label or "**mean, frequent attributes**: missing",
            frequent_mean,
            ours.get("frequent_mean_accuracy"),
        ),
        (
            "mean over every attribute",
            "mean over every attribute",
            metric("mean_accuracy"),
            ours.get("mean_accuracy"),
        ),
        (
            "**mAP** (VISPR's official metric)",
            "**mAP** (VISPR's official metric)",
            metric("map"),
            ours.get("map"),
        ),
    ]
    for label, single_label, read, workspace in summary:
        ens = _ours(ensemble, read, workspace, True)
        our_rows.append([label, format_spread(ens, 100, 1)])
        if single:
            our_rows.append(
                [
                    f"{single_label}, single model (Model-Cropped off)",
                    mark(over_seeds(single, read), ens, 100, 1),
                ]
            )
    our_rows.append(
        [
            "trivial baseline, **mean over the frequent attributes**: every attribute absent",
            "missing (re-run `evaluate`)"
            if ours.get("frequent_always_absent_mean_accuracy") is None and frequent is None
            else _fmt(ours.get("frequent_always_absent_mean_accuracy"), 100, 1),
        ]
    )
    our_rows.append(
        [
            "trivial baseline, mean over every attribute: every attribute absent",
            _baseline(evaluate, split, "always_absent_mean_accuracy", 100, 1),
        ]
    )
    our_rows.append(
        [
            "trivial baseline, **mAP**: one constant score (AP = each class's positive rate)",
            _baseline(evaluate, split, "constant_map", 100, 1),
        ]
    )
    return "\n\n".join(
        [
            "## Table 3: attribute accuracy (%)",
            "Paper (VISPR, attributes with > 300 training images):",
            _table(["attribute", "accuracy"], paper_rows),
            f"Ours ({cfg.data.dataset} `{split}`, threshold 0.5; the attribute sets differ, compare the means):",
            _table(["attribute", "accuracy"], our_rows),
            _protocol(cfg, split, classes=attribute_classes(evaluate, split), kind="Attribute"),
        ]
    )


def table4(cfg: Config, experiments: list[dict], seg_classes: list[str]) -> tuple[str, int]:
    """Table 4 in Markdown, and how many of its rows no finished experiment fills."""
    split, cam_split, seg_split = (
        cfg.train.eval_split,
        cfg.deeplab.train_split,
        cfg.deeplab.eval_split,
    )
    readers = {
        "pearson": lambda e: dig(e, "privacy", split, "pearson"),
        "spearman": lambda e: dig(e, "privacy", split, "spearman"),
        "cam": lambda e: dig(e, "cam_miou", cam_split),
        "seg": _deeplab_miou(cfg, seg_split),
    }
    full = _matches(experiments, ENSEMBLE, cfg)
    reference = {
        k: over_seeds(full, read) for k, read in readers.items()
    }  # the last row, the full model
    rows, missing = [], []
    for label, switches in TABLE4:
        p, s = paper.TABLE4_ABLATION[label]
        group = _matches(experiments, switches, cfg)
        if not group:
            missing.append(label)
            rows.append([label, _fmt(p), _fmt(s), "-", "-", "-", "-", "missing"])
            continue
        ours = {k: over_seeds(group, read) for k, read in readers.items()}
        shown = (
            (lambda k, *f, ours=ours: format_spread(ours[k], *f))
            if switches == ENSEMBLE
            else (lambda k, *f, ours=ours: mark(ours[k], reference[k], *f))
        )
        rows.append(
            [
                label,
                _fmt(p),
                _fmt(s),
                shown("pearson"),
                shown("spearman"),
                shown("cam", 100, 1),
                shown("seg", 100, 1),
                ", ".join(e["name"] for e in one_per_seed(group)),
            ]
        )
    note = (
        f"Missing rows ({', '.join(missing)}): run `make ablation`, then `make run`."
        if missing
        else "All rows come from finished experiments (`make ablation`)."
    )
    return "\n\n".join(
        [
            "## Table 4: ablation (Pearson / Spearman of the privacy score)",
            _table(
                [
                    "model",
                    "paper P",
                    "paper S",
                    "ours P",
                    "ours S",
                    f"ours CAM mIoU % ({cam_split})",
                    f"ours DeepLab mIoU % ({seg_split})",
                    "experiment",
                ],
                rows,
            ),
            note
            + " The two mIoU columns are ours only (the paper's Table 4 has none): the pseudo-labels of "
            "each row's Model-Image against ground truth, and DeepLabV2 trained on them. In the rows without "
            "+ Priv the privacy loss (eq. 4) is off, so the privacy head that gives our P and S is untrained; "
            f"the paper does not say how it scored privacy in those rows. {NOT_SIGNIFICANT} compares a row with the "
            f"last (full) row. {_deeplab_note(cfg)}",
            _protocol(
                cfg,
                split,
                " Paper rows: VISPR.",
                classes=seg_classes,
                kind="Segmentation (mIoU columns)",
            ),
        ]
    ), len(missing)


def table5(
    cfg: Config, evaluate: dict, pseudo: dict, experiments: list[dict], seg_classes: list[str]
) -> str:
    split = cfg.deeplab.eval_split
    rows = [
        [
            name,
            sup,
            _fmt(voc, digits=1),
            _fmt(paper.VOC_VAL_MIOU.get(name), digits=1),
            _fmt(coco, digits=1),
            "-",
        ]
        for name, (sup, voc, coco) in paper.TABLE5_MIOU.items()
    ]
    ensemble = _matches(experiments, ENSEMBLE, cfg)
    single = _matches(experiments, SINGLE, cfg)
    ceiling = [e for e in experiments if e["deeplab_labels"] == "ground_truth"]
    workspace = evaluate.get("segmentation", {}).get(split, {}).get("miou")
    ours = _ours(ensemble, _deeplab_miou(cfg, split), workspace, True)
    rows.append(
        [
            f"**PrivObfNet, ours** ({cfg.data.dataset} {split})",
            "I+S",
            "-",
            "-",
            "-",
            format_spread(ours, 100, 1),
        ]
    )
    for train_split, scores in pseudo.get("splits", {}).items():
        cam = _ours(
            ensemble,
            lambda e, split=train_split: dig(e, "cam_miou", split),
            scores.get("cam_miou"),
            True,
        )
        free = _ours(
            ensemble,
            lambda e, split=train_split: dig(e, "masks_only_cam_miou", split),
            scores.get("masks_only_cam_miou"),
            True,
        )
        rows.append(
            [
                f"ours: CAM pseudo-labels vs ground truth ({train_split})",
                "I+S",
                "-",
                "-",
                "-",
                format_spread(cam, 100, 1),
            ]
        )
        rows.append(
            [
                f"ours: masks-only baseline, untrained Model-Image's pseudo-labels ({train_split})",
                "I+S",
                "-",
                "-",
                "-",
                mark(free, cam, 100, 1) if free else "missing (re-run `pseudo_labels`)",
            ]
        )
        rows.append(
            [
                f"trivial baseline: background everywhere ({train_split})",
                "-",
                "-",
                "-",
                "-",
                _fmt(scores.get("background_everywhere_miou"), 100, 1),
            ]
        )
        if single:
            one = over_seeds(single, lambda e, split=train_split: dig(e, "cam_miou", split))
            rows.append(
                [
                    f"ours: single model's CAM pseudo-labels, Model-Cropped off ({train_split})",
                    "I+S",
                    "-",
                    "-",
                    "-",
                    mark(one, cam, 100, 1),
                ]
            )
    coarse = _matches(experiments, ENSEMBLE, cfg, _variant({"priors": "coarse"}, cfg))
    if cfg.train.priors != "coarse":  # the refined priors' effect: the paper's coarse ones
        for train_split in pseudo.get("splits", {}):
            for key, what in (
                ("cam_miou", "CAM pseudo-labels"),
                ("masks_only_cam_miou", "masks-only baseline"),
            ):
                value = over_seeds(coarse, lambda e, k=key, t=train_split: dig(e, k, t))
                rows.append(
                    [
                        f"ours, coarse priors (paper Table 1): {what} ({train_split})",
                        "I+S",
                        "-",
                        "-",
                        "-",
                        format_spread(value, 100, 1) if value else "missing (`make seeds`)",
                    ]
                )
        value = over_seeds(coarse, _deeplab_miou(cfg, split))
        rows.append(
            [
                f"ours, coarse priors (paper Table 1) ({split})",
                "I+S",
                "-",
                "-",
                "-",
                mark(value, ours, 100, 1) if value else "missing (`make seeds`)",
            ]
        )
    one = over_seeds(single, _deeplab_miou(cfg, split))
    rows.append(
        [
            f"ours: single model, Model-Cropped off ({split})",
            "I+S",
            "-",
            "-",
            "-",
            mark(one, ours, 100, 1) if one else "missing (`make seeds`)",
        ]
    )
    rows.append(
        [
            f"trivial baseline: background everywhere ({split})",
            "-",
            "-",
            "-",
            "-",
            _baseline(evaluate, split, "background_everywhere_miou", 100, 1),
        ]
    )
    top = over_seeds(ceiling, _deeplab_miou(cfg, split))
    rows.append(
        [
            f"ours: fully supervised ceiling ({split})",
            "full",
            "-",
            "-",
            "-",
            format_spread(top, 100, 1) if top else "missing (`make seeds`)",
        ]
    )
    return "\n\n".join(
        [
            "## Table 5: DeepLabV2 mIoU (%) trained on CAM pseudo-labels",
            _table(
                [
                    "method",
                    "sup.",
                    "VOC test",
                    "VOC val",
                    "COCO val",
                    f"ours ({cfg.data.dataset} {split})",
                ],
                rows,
            ),
            "Paper rows: VOC 2012 test (the evaluation server) / COCO 2014 val, DeepLabV2-ResNet101; "
            "the paper gives no VOC val number, L2G's own paper does (val 72.1, test 71.7), the one to "
            f"compare with a VOC run here, which scores VOC's val split. Ours score `{split}`. "
            "The masks-only baseline "
            "is what the prior masks and the true image labels give for free: the same protocol with "
            f"an untrained, randomly initialised Model-Image ({NOT_SIGNIFICANT} against the CAM "
            f"pseudo-labels); the single model's rows are compared with ours. {_deeplab_note(cfg)} "
            + _protocol(
                cfg,
                split,
                f" Background threshold {cfg.pseudo_labels.bg_threshold}.",
                classes=seg_classes,
                kind="Segmentation",
            ),
        ]
    )


def _describe(variant: tuple, cfg: Config) -> str:
    target, size, weights, priors = variant
    weights = dict(weights)
    return (
        f"ensemble: {target} crop target, {cfg.train.n_crops} crops of {size}, loss weights image (eq. 2) "
        f"{weights.get('image', 0):g} / cropped {weights.get('cropped', 0):g}, {priors} priors"
    )


def ensemble_table(cfg: Config, evaluate: dict, pseudo: dict, experiments: list[dict]) -> str:
    """Model-Cropped judged: each way of training the ensemble (`make seeds`, `make hypotheses`) beside the single
    model and the trivial baselines, with significance against the single model."""
    split, cam_split, seg_split = (
        cfg.train.eval_split,
        cfg.deeplab.train_split,
        cfg.deeplab.eval_split,
    )
    readers = [
        lambda e: dig(e, "cam_miou", cam_split),
        _deeplab_miou(cfg, seg_split),
        lambda e: dig(e, "attributes", split, "map"),
        lambda e: dig(e, "privacy", split, "pearson"),
    ]
    scales = [(100, 1), (100, 1), (100, 1), (1, 2)]
    single = _matches(experiments, SINGLE, cfg)
    reference = [over_seeds(single, read) for read in readers]
    rows = [
        [
            "single model (Model-Cropped off)",
            *(format_spread(r, *f) for r, f in zip(reference, scales)),
            ", ".join(e["name"] for e in one_per_seed(single)) or "missing (`make seeds`)",
        ]
    ]
    profile = _variant({}, cfg)
    variants = {
        _variant(e, cfg)
        for e in experiments
        if e["deeplab_labels"] != "ground_truth"
        and all(e["switches"][k] == v for k, v in ENSEMBLE.items())
    }
    for variant in sorted(variants, key=lambda v: (v != profile, str(v))):
        group = _matches(experiments, ENSEMBLE, cfg, variant)
        if not group:
            continue
        label = _describe(variant, cfg) + (" **(the profile)**" if variant == profile else "")
        ours = [
            mark(over_seeds(group, read), ref, *f)
            for read, ref, f in zip(readers, reference, scales)
        ]
        rows.append([label, *ours, ", ".join(e["name"] for e in one_per_seed(group))])
    masks_only = over_seeds(
        _matches(experiments, ENSEMBLE, cfg), lambda e: dig(e, "masks_only_cam_miou", cam_split)
    )
    rows.append(
        [
            "trivial baselines: masks-only CAM / background everywhere / constant score",
            format_spread(masks_only, 100, 1) if masks_only else "-",
            _baseline(evaluate, seg_split, "background_everywhere_miou", 100, 1),
            _baseline(evaluate, split, "constant_map", 100, 1),
            "-",
            "",
        ]
    )
    header = [
        "training",
        f"CAM mIoU % ({cam_split})",
        f"DeepLab mIoU % ({seg_split})",
        f"mAP % ({split})",
        f"Pearson ({split})",
        "experiments",
    ]
    return "\n\n".join(
        [
            "## Model-Cropped, judged: the ensemble's variants against the single model",
            _table(header, rows),
            f"Each ensemble row is one way of training Model-Cropped (`make seeds` runs the profile's, "
            f"`make hypotheses` "
            f"the others), over its seeds; the p of each row is its t-test against the single model "
            f"({NOT_SIGNIFICANT}: p >= 0.05). The paper's reading of eq. 2 (`paper`) makes "
            "Model-Cropped's ReLU'd CAM logits, unnormalised, the target of Model-Image's softmax; "
            "L2G's (`l2g`) processes them first (per-class max-normalised, absent "
            "classes out, argmax class only, thresholded to 0/1, gated by the human/text masks). The Pearson baseline "
            f"is undefined (a constant score has no correlation). {_deeplab_note(cfg)} "
            + _protocol(
                cfg,
                split,
                classes=segmentation_class_list(evaluate, pseudo),
                kind="Segmentation (mIoU columns)",
            ),
        ]
    )


def render_tables(
    cfg: Config, evaluate: dict, pseudo: dict, experiments: list[dict]
) -> tuple[str, dict]:
    """-> (tables.md's text, the report's metrics: experiments used, Table 4 rows missing)."""
    experiments = [e for e in experiments if e.get("profile") == cfg.profile]
    seg_classes = segmentation_class_list(evaluate, pseudo)
    ablation, missing = table4(cfg, experiments, seg_classes)
    parts = [
        f"# PrivObfNet: the paper's tables beside ours (profile `{cfg.profile}`)",
        "Generated by the `report` stage from reports/metrics/*.json and reports/ablation.json.",
        table2(cfg, evaluate, experiments),
        table3(cfg, evaluate, experiments),
        ablation,
        table5(cfg, evaluate, pseudo, experiments, seg_classes),
        ensemble_table(cfg, evaluate, pseudo, experiments),
    ]
    return "\n\n".join(parts) + "\n", {
        "ablation_experiments": len(experiments),
        "table4_rows_missing": missing,
    }
