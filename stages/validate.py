"""Stage `validate`: check every split with Great Expectations; write the manifests only if all pass.

Per split: the reader's manifest, per-row file checks (``privobfnet.data.checks``), then one GX
expectation suite on the resulting frame. ``reports/validation.md`` (every expectation, pass or
fail, observed value, up to 10 offending ids and files with their error text) and
``reports/metrics/validate.json`` are always written; ``<manifest_dir>/<split>.parquet`` only when
every expectation of every split held. On failure ``main`` raises ``ValidationFailed`` and the
command exits 1, so DVC runs nothing downstream.
"""

from __future__ import annotations

import os

os.environ["GX_ANALYTICS_ENABLED"] = "false"  # read when GX creates a context: no usage stats

import sys
from dataclasses import dataclass, field
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from PIL import Image

from ops.outputs import FIGURES_DIR, VALIDATION_REPORT, write_metrics
from ops.params import load_params
from ops.tracking import stage_run
from privobfnet.config import Config
from privobfnet.data.checks import row_checks, split_overlaps
from privobfnet.data.errors import DataError
from privobfnet.data.images import load_mask, load_rgb
from privobfnet.data.manifest import COLUMNS, write_manifest
from privobfnet.data.privacy import score_range as privacy_score_range
from privobfnet.data.readers import SHARED_SPLITS, dataset_root, read_dataset
from privobfnet.io import atomic_path, atomic_write_text
from privobfnet.logs import configure_logging
from privobfnet.viz import FigureSample, samples_figure

REPORT_PATH = VALIDATION_REPORT
MAX_OFFENDERS = 10  # listed per failed expectation; the count says how many there were


class ValidationFailed(Exception):
    """At least one expectation failed; ``summary`` is the human-readable list of failures."""

    def __init__(self, summary: str):
        super().__init__(summary)
        self.summary = summary


@dataclass(frozen=True)
class Rule:
    """One expectation plus what the report prints for a row that breaks it."""

    text: str  # the rule in words
    expectation: gxe.Expectation
    file_column: str = "path"  # names the offending file
    detail_column: str | None = None  # the error text or the offending value


@dataclass
class CheckResult:
    """The outcome of one rule on one split."""

    rule: str
    success: bool
    observed: str
    offenders: list[tuple[str, str, str]] = field(default_factory=list)  # (image_id, file, detail)
    n_offenders: int = 0


@dataclass
class SplitReport:
    """Every check of one split, and its manifest when it could be read."""

    split: str
    rows: int
    results: list[CheckResult]
    manifest: pd.DataFrame | None = None
    decoded: int = 0

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success]


def split_rules(
    split: str,
    *,
    n_classes: int,
    configured_rows: int,
    skipped: int = 0,
    score_range: tuple[float, float] = (0.0, 1.0),
) -> list[Rule]:
    """The expectations every split of every data set must meet.

    ``skipped``: images of the split that the reader left out for lack of annotations (COCO's
    ``attrs["skipped"]``); the manifest must then hold ``configured_rows - skipped`` rows, and
    at least one. ``score_range``: what ``data.privacy_rescale`` maps ratings onto.
    """
    low, high = score_range
    in_set = gxe.ExpectColumnValuesToBeInSet
    count_rule = f"row count equals data.splits.{split} ({configured_rows})"
    if skipped:
        count_rule += f" minus {skipped} images without annotations"
    return [
        Rule("image_id is not null", gxe.ExpectColumnValuesToNotBeNull(column="image_id")),
        Rule("image_id is unique", gxe.ExpectColumnValuesToBeUnique(column="image_id")),
        Rule(
            f"split column is {split!r}",
            in_set(column="split", value_set=[split]),
            detail_column="split",
        ),
        Rule(
            "image file exists",
            in_set(column="file_exists", value_set=[True]),
            detail_column="decode_error",
        ),
        Rule(
            "image decodes to RGB (intact, within data.max_image_pixels)",
            in_set(column="decodes", value_set=[True]),  # null = not in the decode sample
            detail_column="decode_error",
        ),
        Rule(
            "image size equals the manifest's width x height",
            in_set(column="size_matches_manifest", value_set=[True]),
            detail_column="size_error",
        ),
        Rule(
            f"labels is a multi-hot vector of length {n_classes}",
            in_set(column="labels_length", value_set=[n_classes]),
            detail_column="labels",
        ),
        Rule(
            "label values are 0 or 1",
            in_set(column="labels_binary", value_set=[True]),
            detail_column="labels",
        ),
        Rule(
            "at least one label per image",
            gxe.ExpectColumnValuesToBeBetween(column="n_labels", min_value=1),
            detail_column="labels",
        ),
        Rule(
            "a0_safe is not combined with another attribute",
            in_set(column="safe_alone", value_set=[True]),  # null: the data set has no a0_safe
            detail_column="labels",
        ),
        Rule(
            f"privacy_score is in [{low:g}, {high:g}] or null",
            gxe.ExpectColumnValuesToBeBetween(
                column="privacy_score", min_value=low, max_value=high, mostly=1.0
            ),
            detail_column="privacy_score",
        ),
        Rule(
            "image id is in no other split",
            gxe.ExpectColumnValuesToBeNull(column="split_overlap_error"),
            detail_column="split_overlap_error",
        ),
        Rule(
            "mask file exists where mask_path is set",
            in_set(column="mask_exists", value_set=[True]),
            file_column="mask_path",
            detail_column="mask_error",
        ),
        Rule(
            "mask has the image's size and values in 0..n_classes or 255",
            in_set(column="mask_matches_image", value_set=[True]),
            file_column="mask_path",
            detail_column="mask_error",
        ),
        Rule(
            "mask classes are among the image's labels",
            in_set(column="mask_classes_in_labels", value_set=[True]),
            file_column="mask_path",
            detail_column="mask_label_error",
        ),
        Rule(
            count_rule,
            gxe.ExpectTableRowCountToEqual(value=configured_rows - skipped),
            file_column="",
        ),
        Rule(
            "split has at least one row",
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            file_column="",
        ),
    ]


def _text(value: object) -> str:
    if isinstance(value, list):
        return str(value)
    return "<null>" if value is None or pd.isna(value) else str(value)


def _result(rule: Rule, gx_result, checked: pd.DataFrame) -> CheckResult:
    """Turn one GX expectation result into the report's terms (observed value, offending rows)."""
    if gx_result.exception_info.get("raised_exception"):
        return CheckResult(
            rule.text, False, f"error: {gx_result.exception_info.get('exception_message')}"
        )
    res = gx_result.result
    if "observed_value" in res:  # table-level expectation: the offender is the split's source file
        source = checked.attrs.get("source")
        offenders = [] if gx_result.success or not source else [("", str(source), "")]
        observed = f"{res['observed_value']} rows"
        return CheckResult(rule.text, bool(gx_result.success), observed, offenders, len(offenders))
    observed = f"{res.get('unexpected_count', 0)} of {res.get('element_count', 0)} rows break it"
    if res.get("missing_count"):
        observed += f" ({res['missing_count']} null: nothing to check or not sampled)"
    offenders = []
    for hit in res.get("unexpected_index_list") or []:
        row = checked.iloc[int(hit["row"])]
        file = _text(row[rule.file_column]) if rule.file_column else ""
        detail = ""
        if rule.detail_column:  # an error text says it all; a bare value needs its column's name
            value = _text(row[rule.detail_column])
            detail = (
                value
                if rule.detail_column.endswith("_error")
                else f"{rule.detail_column} = {value}"
            )
        offenders.append((_text(row["image_id"]), file, detail))
    return CheckResult(
        rule.text,
        bool(gx_result.success),
        observed,
        offenders[:MAX_OFFENDERS],
        res.get("unexpected_count", 0),
    )


def validate_split(
    context,
    split: str,
    checked: pd.DataFrame,
    configured_rows: int,
    score_range: tuple[float, float] = (0.0, 1.0),
) -> list[CheckResult]:
    """Run the split's expectation suite with GX (``context``: an ephemeral one) on ``row_checks``' frame
    (plus its ``split_overlap_error`` column)."""
    rules = split_rules(
        split,
        n_classes=len(checked.attrs["class_names"]),
        configured_rows=configured_rows,
        skipped=int(checked.attrs.get("skipped", 0)),
        score_range=score_range,
    )
    asset = context.data_sources.add_pandas(f"manifest_{split}").add_dataframe_asset(split)
    batch_definition = asset.add_batch_definition_whole_dataframe(split)
    suite = context.suites.add(
        gx.ExpectationSuite(name=split, expectations=[r.expectation for r in rules])
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=split, data=batch_definition, suite=suite)
    )
    # GX sees scalar columns only (no list-valued labels); `row` maps its hits back to our frame
    checked = checked.reset_index(drop=True)
    frame = checked.drop(columns=["labels"])
    frame.insert(0, "row", range(len(frame)))
    outcome = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["row"]},
    )
    by_id = {
        r.expectation_config.id: r for r in outcome.results
    }  # GX set the ids when the suite was added
    return [_result(rule, by_id[rule.expectation.id], checked) for rule in rules]


def validate_dataset(cfg: Config) -> list[SplitReport]:
    """Read every configured split and check it; a reader ``DataError`` becomes a failed check."""
    try:
        manifests = read_dataset(cfg.data)
    except DataError as exc:
        failure = CheckResult(
            "annotations are readable", False, exc.rule, [("", exc.path, str(exc))], 1
        )
        return [SplitReport("read_dataset", 0, [failure])]
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    readable = {s: m for s, m in manifests.items() if s in cfg.data.splits and "path" in m.columns}
    overlaps = split_overlaps(readable, allowed=SHARED_SPLITS.get(cfg.data.dataset, ()))
    reports = []
    for split, expected_rows in cfg.data.splits.items():
        manifest = manifests.get(split)
        missing = [] if manifest is None else [c for c in COLUMNS if c not in manifest.columns]
        if manifest is None or missing or "class_names" not in manifest.attrs:
            what = (
                "split missing" if manifest is None else f"lacks {missing or 'attrs class_names'}"
            )
            reports.append(
                SplitReport(
                    split, 0, [CheckResult("manifest has the schema's columns", False, what)]
                )
            )
            continue
        checked = row_checks(
            manifest,
            max_pixels=cfg.data.max_image_pixels,
            allow_grayscale=cfg.data.allow_grayscale,
            decode_sample=cfg.validate.decode_sample,
            seed=cfg.seed,
            decode_images=cfg.validate.decode_images,
        )
        checked["split_overlap_error"] = overlaps[split]
        score_range = privacy_score_range(cfg.data.privacy_rescale)
        results = validate_split(context, split, checked, expected_rows, score_range)
        decoded = int(checked["decodes"].eq(True).sum())
        reports.append(SplitReport(split, len(manifest), results, manifest, decoded))
    return reports


def render_report(reports: list[SplitReport], *, title: str, failures_only: bool = False) -> str:
    """Markdown: per split, each expectation with pass/fail and observed value, then the offenders."""
    n_failed = sum(len(r.failed) for r in reports)
    verdict = (
        "PASSED: every expectation held"
        if n_failed == 0
        else f"FAILED: {n_failed} expectation(s) failed"
    )
    lines = [f"# Data validation: {title}", "", f"**{verdict}**", ""]
    for report in reports:
        if failures_only and not report.failed:
            continue
        status = "passed" if not report.failed else f"{len(report.failed)} failed"
        lines += [f"## Split `{report.split}`: {report.rows} rows, {status}", ""]
        if not failures_only:
            lines += ["| expectation | result | observed |", "|---|---|---|"]
            for r in report.results:
                observed = r.observed.replace("|", "\\|")
                lines.append(f"| {r.rule} | {'pass' if r.success else 'FAIL'} | {observed} |")
            lines.append("")
        for r in report.failed:
            lines.append(f"- FAIL **{r.rule}**: {r.observed}")
            for image_id, file, detail in r.offenders:
                where = " ".join(f"`{part}`" for part in (image_id, file) if part)
                lines.append(f"  - {where}: {detail}" if detail else f"  - {where}")
            if r.n_offenders > len(r.offenders):
                lines.append(f"  - ... and {r.n_offenders - len(r.offenders)} more")
        if report.failed:
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def summarize(reports: list[SplitReport]) -> dict:
    """The metrics: per split rows, images fully decoded without error, failed expectations, success.

    ``success`` is a bool (MLflow skips it); ``failed_expectations`` is its numeric mirror.
    """
    splits = {
        r.split: {
            "rows": r.rows,
            "decoded": r.decoded,
            "failed_expectations": len(r.failed),
            "success": not r.failed,
        }
        for r in reports
    }
    failed = sum(s["failed_expectations"] for s in splits.values())
    return {"success": failed == 0, "failed_expectations": failed, "splits": splits}


def main(cfg: Config) -> dict:
    """Validate every split; write manifests only if all pass. Returns the metrics written."""
    with stage_run("validate", cfg) as run:
        reports = validate_dataset(cfg)
        title = f"{cfg.data.dataset} (profile {cfg.profile})"
        atomic_write_text(REPORT_PATH, render_report(reports, title=title))
        metrics = summarize(reports)
        write_metrics("validate", metrics)
        run.log_metrics(metrics)
        if not metrics["success"]:
            raise ValidationFailed(render_report(reports, title=title, failures_only=True))
        for report in reports:
            with atomic_path(Path(cfg.data.manifest_dir) / f"{report.split}.parquet") as tmp:
                write_manifest(report.manifest, tmp)
        figure = write_samples_figure(reports[0].manifest, cfg)
        run.log_artifact(figure, "figures")
    return metrics


def write_samples_figure(manifest: pd.DataFrame, cfg: Config, n_samples: int = 8) -> Path:
    """reports/figures/<dataset>_samples.png: the first images with masks of a validated split.

    SynthPriv's simulated human parser output is shown beside each mask when present.
    """
    with_masks = manifest[manifest["mask_path"].notna()]
    rows = (with_masks if len(with_masks) else manifest).head(n_samples)
    n_classes = len(manifest.attrs["class_names"])
    parser_dir = Path(dataset_root(cfg.data)) / "SimulatedHumanParser"
    samples = []
    for row in rows.itertuples(index=False):
        image = load_rgb(row.path, max_pixels=cfg.data.max_image_pixels)
        mask = None
        if isinstance(row.mask_path, str):
            mask = load_mask(
                row.mask_path, n_classes=n_classes, max_pixels=cfg.data.max_image_pixels
            )
        parser_file = parser_dir / f"{row.image_id}.png"
        parser = np.asarray(Image.open(parser_file).convert("L")) if parser_file.exists() else None
        labels = tuple(i for i, v in enumerate(row.labels) if v)
        samples.append(
            FigureSample(image=image, class_mask=mask, parser_mask=parser, labels=labels)
        )
    figure = samples_figure(samples, manifest.attrs["class_names"])
    path = FIGURES_DIR / f"{cfg.data.dataset}_samples.png"
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return path


if __name__ == "__main__":
    configure_logging()
    try:
        main(load_params())
    except ValidationFailed as failure:
        sys.exit(f"{failure.summary}\nvalidate: manifests not written; see {REPORT_PATH}")
