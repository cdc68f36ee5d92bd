"""The model card of the registered ensemble, rendered from the evaluate stage's metrics.

One renderer, two places: ``ops/registry.py`` sets it as the registered model's description
(``MlflowClient.update_registered_model``) with the numbers of the run that registered the version,
and ``python -m ops.model_card`` writes ``docs/model_card.md`` from ``reports/metrics/evaluate.json``
(the default profile's committed metrics; ``tests/ops/test_model_card.py`` checks the page is that
rendering). No number in the card is typed by hand: each comes from the metrics it is given,
beside the trivial baseline the evaluate stage computed for the same split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping

from ops.params import resolve_profile

ROOT = Path(__file__).resolve().parents[1]
DOCS_CARD = ROOT / "docs" / "model_card.md"
PROFILES = ROOT / "profiles"
METRICS_FILE = Path("reports/metrics/evaluate.json")  # relative: the card names it so
# more attributes than this are not listed (a registered model's description holds 5000 characters)
LISTED_ATTRIBUTES = 20
DESCRIPTION_LIMIT = 5000  # MLflow's registry column (String(5000) in its SQL stores)
# (section, metric, label, baseline key, baseline label); None: no baseline of that name
ROWS = (
    ("attributes", "map", "attribute mAP", "constant_map", "constant score"),
    (
        "attributes",
        "mean_accuracy",
        "attribute mean accuracy (threshold 0.5)",
        "always_absent_mean_accuracy",
        "always absent",
    ),
    ("privacy", "l1", "privacy score L1 (lower is better)", "mean_score_l1", "training mean"),
    ("privacy", "pearson", "privacy score Pearson", None, "0 for any constant score"),
    ("privacy", "spearman", "privacy score Spearman", None, "0 for any constant score"),
)


def _number(value: Any) -> str:
    return (
        f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
    )


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """The Markdown table: each headline metric per evaluated split, beside its trivial baseline."""
    lines = ["| metric | split | model | trivial baseline |", "| --- | --- | --- | --- |"]
    for split in metrics.get("splits", []):
        baselines = metrics.get("baselines", {}).get(split, {})
        for section, name, label, baseline_key, baseline_label in ROWS:
            value = metrics.get(section, {}).get(split, {}).get(name)
            if value is None:
                continue
            baseline = (
                f"{_number(baselines.get(baseline_key))} ({baseline_label})"
                if baseline_key
                else baseline_label
            )
            lines.append(f"| {label} | {split} | {_number(value)} | {baseline} |")
    return "\n".join(lines)


def attribute_names(metrics: Mapping[str, Any]) -> list[str]:
    """The attributes the evaluate stage scored, by their number (a0, a9, a10, ...)."""
    names = {n for split in metrics.get("attributes", {}).values() for n in split.get("ap", {})}
    return sorted(names, key=lambda n: (int(n[1:].split("_")[0]) if n[1:2].isdigit() else 0, n))


def weakest_attributes(metrics: Mapping[str, Any], split: str = "val", n: int = 3) -> str:
    """The ``n`` attributes with the lowest AP on ``split`` (``a11_tattoo`` 0.120, ...), or ''."""
    ap = metrics.get("attributes", {}).get(split, {}).get("ap", {})
    numbers = {k: v for k, v in ap.items() if isinstance(v, (int, float)) and v == v}
    lowest = sorted(numbers, key=lambda k: (numbers[k], k))[:n]
    return ", ".join(f"`{name}` {numbers[name]:.3f}" for name in lowest)


def model_card(
    metrics: Mapping[str, Any],
    *,
    profile: str,
    dataset: str,
    input_size: int,
    backbone: str,
    source: str,
) -> str:
    """The card as Markdown; ``source`` says where its numbers come from (a file, a run)."""
    class_names = attribute_names(metrics)
    weakest = weakest_attributes(metrics)
    weakest_line = (
        f" The lowest APs on val: {weakest}; such an attribute is often missed." if weakest else ""
    )
    attributes = (
        ", ".join(f"`{name}`" for name in class_names)
        if len(class_names) <= LISTED_ATTRIBUTES
        else "`privobfnet attributes --model ...` lists them"
    )
    return f"""# Model card: privobfnet-ensemble

PrivObfNet's **Model-Image** (Tay, Subbaraju, Kandappu, WACV 2024) as trained by this project's
pipeline: profile `{profile}`, data set `{dataset}`, backbone `{backbone}`, input {input_size} px
square. From an RGB image, with the person mask and the text-line mask its detectors make, it
predicts the image's **privacy score** in [0, 1], the **probability of each privacy attribute**,
and a map per attribute (its class activation map), from which `privobfnet obfuscate` hides the
attributes a user chooses. Numbers below: {source}.

## Use

```python
import mlflow, pandas as pd

model = mlflow.pyfunc.load_model("models:/privobfnet-ensemble@champion")
model.predict(pd.DataFrame({{"image": [open("photo.jpg", "rb").read()]}}))
# one row per image: privacy_score, then one probability per attribute id
```

The input is a column `image` of image file bytes (base64 strings in a REST request to
`mlflow models serve`); the model runs the same detectors and the same scoring as
`privobfnet score --model models:/privobfnet-ensemble@champion`, whose answer it gives.

## Intended use

- Scoring how private an image is and which of its {len(class_names)} attributes it shows
  ({attributes}).
- Choosing what to hide with `privobfnet obfuscate`, which snaps the attribute maps to the
  detectors' regions (faces, people, text lines) and fills them solid.
- Research on weakly supervised privacy segmentation: the pipeline reproduces the paper's protocol.

Not intended: identifying people, judging people by their attributes, or serving as the only
safeguard for images that must stay private (hide by kind with `--hide-all`, check with
`--verify`, and look at the output).

## Data

Trained on the `{dataset}` data set's train split from image-level labels and privacy scores only
(no masks); scored on its held-out splits. The default profile's data set, SynthPriv, is generated:
drawn people, faces and documents with Faker's text in 13 locales, not photographs. A checkpoint of
a paper profile (VISPR) is needed for real photos.

## Metrics

Each number beside the trivial baseline it has to beat, on the same split (the evaluate stage's
`reports/metrics/evaluate.json`; the attribute metrics are VISPR's, the privacy ones the paper's
Table 2):

{metrics_table(metrics)}

## Known limits

- **Small faces are missed.** The model sees the image at {input_size} px, where a small face is a
  few pixels wide, and MediaPipe's full-range face detector, whose boxes the face masks snap to,
  misses faces under about 45 px in a 640 px wide image; `--verify` uses the same detector, so it
  cannot flag them.
- **Blur is reversible.** Blurred or finely pixelated text can be partly recovered (deblurring, or
  matching rendered candidates block by block); the tool fills solid by default and warns on blur.
- **What the model does not hide.** The model hides nothing by itself: it scores and maps. Only its
  {len(class_names)} attributes exist for it; anything else (a house number in the background, a
  reflection, a tattoo of a kind it never saw, handwriting the OCR cannot read, what a place
  reveals) stays. Text attributes are hidden by what each line says, which needs the line to be
  detected and read; a line the detector misses is not hidden. Metadata is removed by the tool's
  encoder, not by the model.
- **Synthetic training data.** The default profile's checkpoint learned SynthPriv's drawn images;
  its scores on real photos are not measured.
- **Attributes differ.** The mAP averages attributes whose APs differ widely.{weakest_line}
"""


def fit_description(card: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """``card`` cut to ``limit`` characters at a line end, with a pointer to the full card."""
    if len(card) <= limit:
        return card
    note = "\n\n(cut to fit the registry; the full card: docs/model_card.md)\n"
    return card[: card.rfind("\n", 0, limit - len(note))] + note


def render_docs_card(metrics_path: Path = METRICS_FILE) -> str:
    """docs/model_card.md's text: the default profile's settings and its committed metrics."""
    params = resolve_profile("default", PROFILES)
    return model_card(
        json.loads((ROOT / metrics_path).read_text()),
        profile="default",
        dataset=params["data"]["dataset"],
        input_size=int(params["train"]["input_size"]),
        backbone=params["train"]["backbone"],
        source=f"the default profile's `{metrics_path}`, written by `python -m ops.model_card`",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description="write docs/model_card.md from the evaluate metrics")
    ap.add_argument("--metrics", default=str(METRICS_FILE))
    ap.add_argument("--out", default=str(DOCS_CARD))
    args = ap.parse_args()
    Path(args.out).write_text(render_docs_card(Path(args.metrics)))


if __name__ == "__main__":
    main()
