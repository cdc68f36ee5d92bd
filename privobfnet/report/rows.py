"""The experiments behind the tables, defined once: Table 4's rows, the seeds, the hypotheses.

``make ablation``, ``make seeds`` and ``make hypotheses`` run these (``tools/experiments.py``
prints them as ``dvc exp run`` overrides), ``tools/collect_ablation.py`` collects the finished
ones into reports/ablation.json, and the report (``privobfnet.report.tables``) finds its rows in
that file by the same switches. An experiment is params.yaml with a few overrides (``-S key=value``).
"""

from __future__ import annotations

from typing import Any

# the switches of the paper's Table 4 (train.*), and mask weighting, which every row keeps on
SWITCHES = ("use_cropped", "use_privacy", "use_attribute", "use_mask_weighting")
ENSEMBLE = {"use_cropped": True, "use_privacy": True, "use_attribute": True}  # the full model
SINGLE = {"use_cropped": False, "use_privacy": True, "use_attribute": True}  # Model-Cropped off
# Table 4, top to bottom: (the paper's label, the switches)
TABLE4 = (
    ("Attention (Image)", {"use_cropped": False, "use_privacy": False, "use_attribute": False}),
    ("+ Priv", {"use_cropped": False, "use_privacy": True, "use_attribute": False}),
    ("+ Attr", {"use_cropped": False, "use_privacy": False, "use_attribute": True}),
    ("+ Priv + Attr", SINGLE),
    ("Attention (Image + Cropped) + Priv + Attr", ENSEMBLE),
)
CEILING = {"deeplab.labels": "ground_truth"}  # DeepLabV2 on the ground truth: the ceiling
# the full model with the paper's coarse priors (one mask per Table 1 type; privobfnet.priors):
# the refined priors' effect is the difference, its masks-only baseline under the same priors
COARSE = {"train.priors": "coarse"}
SEEDS = (0, 1, 2)
# what the ensemble's hypotheses change in Model-Cropped's training, one change each
HYPOTHESES = (
    {"train.crop_target": "l2g"},
    {"train.crop_size": 160},
    {"train.loss_weights.image": 1.0},
)
HYPOTHESIS_KEYS = ("crop_target", "crop_size", "loss_weights")  # train.* keys a hypothesis varies
PRIORS_KEY = "priors"  # train.priors: the seeds' and ablation's coarse row varies it


def switches(values: dict[str, bool]) -> dict[str, Any]:
    """Table 4's switches as params overrides."""
    return {f"train.{key}": value for key, value in values.items()}


def grid(name: str) -> list[dict[str, Any]]:
    """The experiments of ``make <name>`` as params overrides, one dict each."""
    if name == "ablation":  # Table 4's rows and the ceiling, at the workspace's seed
        return [switches(s) for _, s in TABLE4] + [{**switches(ENSEMBLE), **COARSE}, CEILING]
    if name == "seeds":  # the ensemble, the single model and the ceiling over the seeds
        variants = [switches(ENSEMBLE), switches(SINGLE), {**switches(ENSEMBLE), **COARSE}, CEILING]
        return [{"seed": seed, **variant} for seed in SEEDS for variant in variants]
    if name == "hypotheses":  # the ensemble trained three other ways, over the seeds
        return [
            {"seed": seed, **switches(ENSEMBLE), **change}
            for seed in SEEDS
            for change in HYPOTHESES
        ]
    raise ValueError(f"no experiment grid {name!r} (known: ablation, seeds, hypotheses)")


def varied_keys() -> list[tuple[str, ...]]:
    """The params keys the grids vary (besides ``seed``): equal for the runs of one configuration."""
    keys = {("seed",), ("deeplab", "labels")}
    keys |= {("train", key) for key in SWITCHES + HYPOTHESIS_KEYS + (PRIORS_KEY,)}
    return sorted(keys)
