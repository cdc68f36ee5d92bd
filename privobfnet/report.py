"""reports/tables.md: the paper's Tables 2-5 with the paper's numbers beside ours (pure: dicts in, Markdown out).

Ours come from the metrics of one pipeline run (evaluate, pseudo_labels) and, for the Table 4
ablation and the fully supervised ceiling, from the finished experiments that `make ablation`
collected into reports/ablation.json. Each table states its protocol; missing rows say how to
fill them.
"""
from __future__ import annotations

from typing import Any

from privobfnet import paper
from privobfnet.config import Config
from privobfnet.data.privacy import privacy_protocol


def _fmt(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _protocol(cfg: Config, split: str, extra: str = "") -> str:
    train, deeplab = cfg.train, cfg.deeplab
    init = lambda pre: "ImageNet" if pre else "random (from scratch)"  # noqa: E731
    return (f"*Protocol:* data set `{cfg.data.dataset}` (profile `{cfg.profile}`), split `{split}`; "
            f"ensemble backbone `{train.backbone}` init {init(train.pretrained)}, input {train.input_size}, "
            f"{train.n_crops} crops of {train.crop_size}; "
            f"DeepLabV2 `{deeplab.backbone}` init {init(deeplab.pretrained)}; "
            f"pseudo-label CRF {'on' if cfg.pseudo_labels.crf else 'off'}, DeepLab CRF off; seed {cfg.seed}. "
            f"{privacy_protocol(cfg.data.dataset, profile=cfg.data.privacy_profile, rescale=cfg.data.privacy_rescale)}"
            f"{extra}")


def table2(cfg: Config, evaluate: dict) -> str:
    split = cfg.train.eval_split
    ours = evaluate.get("privacy", {}).get(split, {})
    rows = [[name, _fmt(l1), _fmt(p), _fmt(s)] for name, (l1, p, s) in paper.TABLE2_PRIVACY_SCORE.items()]
    rows.append([f"**PrivObfNet, ours** ({cfg.data.dataset} {split})", _fmt(ours.get("l1")),
                 _fmt(ours.get("pearson")), _fmt(ours.get("spearman"))])
    return "\n\n".join(["## Table 2: privacy score (L1 error / Pearson / Spearman)",
                        _table(["method", "L1", "Pearson", "Spearman"], rows),
                        "Paper rows: VISPR test set. " + _protocol(cfg, split)])


def table3(cfg: Config, evaluate: dict) -> str:
    split = cfg.train.eval_split
    ours = evaluate.get("attributes", {}).get(split, {})
    paper_rows = [[name, _fmt(acc, digits=1)] for name, acc in paper.TABLE3_ATTRIBUTE_ACCURACY.items()]
    paper_rows.append(["**mean**", _fmt(paper.TABLE3_MEAN_ACCURACY, digits=1)])
    our_rows = [[f"`{name}`", _fmt(acc, 100, 1)] for name, acc in ours.get("accuracy", {}).items()]
    our_rows.append(["**mean**", _fmt(ours.get("mean_accuracy"), 100, 1)])
    our_rows.append(["**mAP** (VISPR's official metric)", _fmt(ours.get("map"), 100, 1)])
    return "\n\n".join([
        "## Table 3: attribute accuracy (%)",
        "Paper (VISPR, attributes with > 300 training images):", _table(["attribute", "accuracy"], paper_rows),
        f"Ours ({cfg.data.dataset} `{split}`, threshold 0.5; the attribute sets differ, compare the means):",
        _table(["attribute", "accuracy"], our_rows), _protocol(cfg, split)])


def _ablation_match(experiments: list[dict], switches: dict[str, bool], crop_target: str) -> dict | None:
    """The newest finished pseudo-label experiment with these switches (mask weighting on, same crop target)."""
    match = [e for e in experiments if e["deeplab_labels"] != "ground_truth" and e["switches"]["use_mask_weighting"]
             and e.get("crop_target", crop_target) == crop_target
             and all(e["switches"][k] == v for k, v in switches.items())]
    return match[-1] if match else None


def table4(cfg: Config, experiments: list[dict]) -> tuple[str, int]:
    """Table 4 in Markdown, and how many of its rows no finished experiment fills."""
    split, cam_split, seg_split = cfg.train.eval_split, cfg.deeplab.train_split, cfg.deeplab.eval_split
    rows, missing = [], []
    for label, switches, (p, s) in paper.TABLE4_ABLATION:
        match = _ablation_match(experiments, switches, cfg.train.crop_target)
        if match is None:
            missing.append(label)
            rows.append([label, _fmt(p), _fmt(s), "-", "-", "-", "-", "missing"])
            continue
        ours = match["privacy"].get(split, {})
        cam = (match.get("cam_miou") or {}).get(cam_split)
        seg = match["segmentation"].get(seg_split, {}).get("miou")
        rows.append([label, _fmt(p), _fmt(s), _fmt(ours.get("pearson")), _fmt(ours.get("spearman")),
                     _fmt(cam, 100, 1), _fmt(seg, 100, 1), match["name"]])
    note = (f"Missing rows ({', '.join(missing)}): run `make ablation`, then `make run`." if missing
            else "All rows come from finished experiments (`make ablation`).")
    return "\n\n".join([
        "## Table 4: ablation (Pearson / Spearman of the privacy score)",
        _table(["model", "paper P", "paper S", "ours P", "ours S", f"ours CAM mIoU % ({cam_split})",
                f"ours DeepLab mIoU % ({seg_split})", "experiment"], rows),
        note + " The two mIoU columns are ours only (the paper's Table 4 has none): the pseudo-labels of "
        "each row's Model-Image against ground truth, and DeepLabV2 trained on them. In the rows without "
        "+ Priv the privacy loss (eq. 4) is off, so the privacy head that gives our P and S is untrained; "
        "the paper does not say how it scored privacy in those rows.",
        _protocol(cfg, split, " Paper rows: VISPR.")]), len(missing)


def table5(cfg: Config, evaluate: dict, pseudo: dict, experiments: list[dict]) -> str:
    split = cfg.deeplab.eval_split
    rows = [[name, sup, _fmt(voc, digits=1), _fmt(coco, digits=1), "-"]
            for name, (sup, voc, coco) in paper.TABLE5_MIOU.items()]
    ours = evaluate.get("segmentation", {}).get(split, {}).get("miou")
    rows.append([f"**PrivObfNet, ours** ({cfg.data.dataset} {split})", "I+S", "-", "-", _fmt(ours, 100, 1)])
    for train_split, scores in pseudo.get("splits", {}).items():
        rows.append([f"ours: CAM pseudo-labels vs ground truth ({train_split})", "I+S", "-", "-",
                     _fmt(scores.get("cam_miou"), 100, 1)])
    single = _ablation_match(experiments, {"use_cropped": False, "use_privacy": True, "use_attribute": True},
                             cfg.train.crop_target)
    single_miou = single["segmentation"].get(split, {}).get("miou") if single else None
    rows.append([f"ours: single model, Model-Cropped off ({split})", "I+S", "-", "-",
                 _fmt(single_miou, 100, 1) if single else "missing (`make ablation`)"])
    ceiling = [e for e in experiments if e["deeplab_labels"] == "ground_truth"]
    ceiling_miou = ceiling[-1]["segmentation"].get(split, {}).get("miou") if ceiling else None
    rows.append([f"ours: fully supervised ceiling ({split})", "full", "-", "-",
                 _fmt(ceiling_miou, 100, 1) if ceiling else "missing (`make ablation`)"])
    return "\n\n".join(["## Table 5: DeepLabV2 mIoU (%) trained on CAM pseudo-labels",
                        _table(["method", "sup.", "VOC test", "COCO val", "ours"], rows),
                        "Paper rows: VOC 2012 test / COCO 2014 val, DeepLabV2-ResNet101. "
                        + _protocol(cfg, split, f" Background threshold {cfg.pseudo_labels.bg_threshold}.")])


def render_tables(cfg: Config, evaluate: dict, pseudo: dict, experiments: list[dict]) -> tuple[str, dict]:
    """-> (tables.md's text, the report's metrics: experiments used, Table 4 rows missing)."""
    experiments = [e for e in experiments if e.get("profile") == cfg.profile]
    ablation, missing = table4(cfg, experiments)
    parts = [f"# PrivObfNet: the paper's tables beside ours (profile `{cfg.profile}`)",
             "Generated by the `report` stage from reports/metrics/*.json and reports/ablation.json.",
             table2(cfg, evaluate), table3(cfg, evaluate), ablation, table5(cfg, evaluate, pseudo, experiments)]
    return "\n\n".join(parts) + "\n", {"ablation_experiments": len(experiments), "table4_rows_missing": missing}
