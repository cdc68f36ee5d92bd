"""The ``privobfnet`` command: obfuscate images, score them, list the model's attributes.

    privobfnet obfuscate INPUT... --out DIR (--hide ATTR,... | --hide-all faces,text,people,pii | --prefs FILE)
    privobfnet score INPUT... --model MODEL [--json]
    privobfnet attributes --model MODEL [--json]

INPUT is a file, a folder (its images, not recursive) or a glob (``**`` recurses). MODEL is an
ensemble checkpoint (``final.pt``) or an MLflow model URI (``models:/privobfnet-ensemble@champion``).
Every command takes ``-v`` (debug lines; ``-vv`` the libraries' too) or ``-q`` (warnings only).
Exit status of ``obfuscate``: 0 all written (and clean with --verify); 1 some image failed (no
output for it); 4 --verify found leaks; 5 both; 2 bad usage or settings (nothing processed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch
import yaml

from privobfnet import __version__
from privobfnet.io import atomic_write_text
from privobfnet.logs import configure_logging
from privobfnet.masks.assets import default_cache_dir
from privobfnet.obfuscate import (
    BLUR_WARNING,
    Detectors,
    Obfuscator,
    Preferences,
    PreferencesError,
    check_outputs,
    load_model,
    output_path,
    parse_preferences,
)
from privobfnet.obfuscate.batch import WorkerSettings, expand_inputs, run_jobs
from privobfnet.obfuscate.detect import DEFAULT_OCR_SIDE, VERIFY_OCR_SIDE
from privobfnet.obfuscate.engine import attribute_table, build_typer
from privobfnet.serving import DEFAULT_MAX_PIXELS, Scorer

EXIT_FAILED, EXIT_USAGE, EXIT_LEAKS = 1, 2, 4
REPORT_NAME = "privobfnet-report.json"
DEFAULTS = Preferences()  # the default profile's redact settings: what the redact stage measures
log = logging.getLogger(__name__)


class UsageError(Exception):
    """Bad arguments or settings: reported in one line, exit status 2."""


# ---- --model: a checkpoint file, or an MLflow model URI (mlflow imported only then) ------------
URI_SCHEMES = ("models:/", "runs:/")
CHECKPOINT_NAME = "final.pt"
CHECKPOINT_ARTIFACT = "checkpoint"  # the registered pyfunc model's artifact (ops/served_model.py)


def is_model_uri(spec: str) -> bool:
    """True for an MLflow model URI, False for a file path."""
    return spec.startswith(URI_SCHEMES)


def resolve_checkpoint(
    spec: str, *, tracking_uri: str | None = None, dst_dir: str | os.PathLike | None = None
) -> Path:
    """A local ensemble checkpoint for ``spec``: a path, or an MLflow model URI fetched into ``dst_dir``.

    For a URI (``models:/privobfnet-ensemble@champion``, ``models:/NAME/VERSION``, ``runs:/...``)
    the model is downloaded and its pyfunc ``checkpoint`` artifact is the checkpoint (what the served
    model itself loads); a version logged before the pyfunc model carries it as an extra file.
    """
    if not is_model_uri(spec):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"{spec}: model checkpoint not found (a final.pt path or models:/NAME@ALIAS)"
            )
        return path
    import mlflow
    from mlflow.models import Model

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    dst = Path(dst_dir or tempfile.mkdtemp(prefix="privobfnet-model-"))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=spec, dst_path=str(dst)))
    except Exception as exc:  # MlflowException: unknown model, version, alias or store
        raise FileNotFoundError(
            f"{spec}: could not fetch from the MLflow store {mlflow.get_tracking_uri()} "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if (local / "MLmodel").is_file():
        pyfunc = Model.load(str(local)).flavors.get("python_function", {})
        artifact = pyfunc.get("artifacts", {}).get(CHECKPOINT_ARTIFACT)
        if artifact and (local / artifact["path"]).is_file():
            return local / artifact["path"]
    found = sorted(local.rglob(CHECKPOINT_NAME)) if local.is_dir() else [local]
    if not found:
        raise FileNotFoundError(
            f"{spec}: the model carries no ensemble checkpoint (pyfunc artifact "
            f"{CHECKPOINT_ARTIFACT!r} or {CHECKPOINT_NAME})"
        )
    return found[0]


# ---- commands ---------------------------------------------------------------------------------
def _preferences(args) -> Preferences:
    prefs = Preferences()
    if args.prefs:
        try:
            raw = yaml.safe_load(Path(args.prefs).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"{args.prefs}: cannot read preferences: {exc}") from None
        prefs = parse_preferences(raw, source=args.prefs)
    flags = {
        "hide": args.hide,
        "hide_all": args.hide_all,
        "style": args.style,
        "block_px": args.block_px,
        "margin_px": args.margin,
        "class_threshold": args.threshold,
        "bg_threshold": args.bg_threshold,
        "text_typing": args.text_typing,
        "type_threshold": args.type_threshold,
        "allow": args.allow,
    }
    return parse_preferences(
        {k: v for k, v in flags.items() if v is not None}, source="command line", base=prefs
    )


def _checkpoint(args) -> str | None:
    if not args.model:
        return None
    path = resolve_checkpoint(args.model, tracking_uri=args.tracking_uri, dst_dir=args.download_dir)
    log.info("model %s: checkpoint %s (%d bytes)", args.model, path, path.stat().st_size)
    return str(path)


def cmd_obfuscate(args) -> int:
    """Obfuscate every input into --out; write the report; exit status as in the module docstring."""
    prefs = _preferences(args)
    checkpoint = _checkpoint(args)
    model = load_model(checkpoint) if checkpoint else None
    typer = build_typer(prefs, model, args.typer)  # refuses bad choices before any image
    Obfuscator(prefs, detectors=Detectors(), model=model, typer=typer)
    if typer is not None and (
        any(a in typer.attributes for a in prefs.hide) or "pii" in prefs.hide_all
    ):
        sources = {"both": "recognizers and the learned typer", "learned": "the learned typer"}
        print(
            f"text: lines read and typed by {sources.get(typer.source, 'the recognizers alone')}"
            + ("" if args.typer else " (no --typer FILE: the learned typer is off)")
            + ("" if model is not None else "; no --model: only text attributes are hidden"),
            file=sys.stderr,
        )
    del model
    if prefs.style == "blur":
        print(BLUR_WARNING, file=sys.stderr)
    inputs = expand_inputs(args.inputs)
    jobs = [(str(p), str(output_path(p, args.out, args.suffix))) for p in inputs]
    check_outputs([(Path(s), Path(t)) for s, t in jobs], suffix=args.suffix)
    workers = max(1, min(args.workers, len(jobs)))
    settings = WorkerSettings(
        prefs,
        checkpoint,
        args.cache_dir,
        args.ocr_side,
        args.verify_side,
        args.threads,
        args.verify,
        args.max_pixels,
        args.device,
        args.typer,
    )
    records = run_jobs(jobs, settings, workers, progress=not args.no_progress)
    failed = [r for r in records if r["error"]]
    leaky = [r for r in records if r.get("leaks")]
    for record in failed:
        print(f"error: {record['input']}: {record['error']}", file=sys.stderr)
    for record in leaky:
        print(
            f"leak: {record['output']}: {len(record['leaks'])} region(s) still readable",
            file=sys.stderr,
        )
    report = {
        "command": "obfuscate",
        "model": args.model,
        "preferences": asdict(prefs),
        "verify": args.verify,
        "summary": {
            "images": len(records),
            "written": len(records) - len(failed),
            "failed": len(failed),
            "with_leaks": len(leaky) if args.verify else None,
        },
        "images": records,
    }
    report_path = Path(args.report) if args.report else Path(args.out) / REPORT_NAME
    atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
    print(
        f"{len(records) - len(failed)}/{len(records)} written to {args.out}; report {report_path}",
        file=sys.stderr,
    )
    return (EXIT_FAILED if failed else 0) | (EXIT_LEAKS if leaky else 0)


def cmd_score(args) -> int:
    """Privacy score and attribute probabilities of each input, as a table or JSON."""
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _score(args)
    finally:
        torch.set_num_threads(threads)


def _score(args) -> int:
    scorer = Scorer(
        _checkpoint(args),
        cache_dir=args.cache_dir,
        device=args.device,
        ocr_side=args.ocr_side,
        threads=args.threads,
        max_pixels=args.max_pixels,
        class_threshold=args.threshold,
        typer=args.typer,
    )
    scorer.prepare()  # a detector that cannot load stops the command before any image
    rows, status = [], 0
    for path in expand_inputs(args.inputs):
        try:
            prediction = scorer.score_file(path)
            probs = {
                n: round(float(p), 4)
                for n, p in zip(scorer.class_names, prediction.attribute_probs)
            }
            rows.append(
                {
                    "input": str(path),
                    "privacy_score": round(prediction.privacy_score, 4),
                    "attributes": probs,
                    "error": None,
                }
            )
        except Exception as exc:  # one bad image does not stop the others
            rows.append({"input": str(path), "error": f"{type(exc).__name__}: {exc}"})
            status = EXIT_FAILED
    if args.json:
        print(json.dumps(rows, indent=2))
        return status
    width = max(len(r["input"]) for r in rows)
    print(f"{'image':<{width}}  score  attributes (p >= {args.threshold})")
    for row in rows:
        if row["error"]:
            print(f"{row['input']:<{width}}  error: {row['error']}")
            continue
        found = sorted(
            ((p, n) for n, p in row["attributes"].items() if p >= args.threshold), reverse=True
        )
        print(
            f"{row['input']:<{width}}  {row['privacy_score']:.3f}  "
            + ", ".join(f"{n} {p:.2f}" for p, n in found)
        )
    return status


def cmd_attributes(args) -> int:
    """The model's attribute ids, mask types and descriptions."""
    table = attribute_table(load_model(_checkpoint(args)))
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    width = max(len(row["id"]) for row in table)
    for row in table:
        print(f"{row['id']:<{width}}  {row['mask_type']:<5}  {row['description']}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    top = argparse.ArgumentParser(prog="privobfnet", description=__doc__.split("\n\n")[0])
    top.add_argument("--version", action="version", version=f"privobfnet {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    chatter = common.add_mutually_exclusive_group()
    chatter.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=None,
        help="log more: -v debug lines, -vv the libraries' too (default: info lines)",
    )
    chatter.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    common.add_argument(
        "--model",
        help="ensemble checkpoint (final.pt) or MLflow URI (models:/privobfnet-ensemble@champion, "
        "models:/NAME/VERSION)",
    )
    common.add_argument(
        "--tracking-uri", help="MLflow store for models:/ URIs (default: $MLFLOW_TRACKING_URI)"
    )
    common.add_argument(
        "--cache-dir",
        default=default_cache_dir(),
        help="detector model cache (the face, person and text models ship in the packages)",
    )
    common.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per process for the detectors and the model (default 1; use --workers to use "
        "more cores: bench/obfuscate.py measured 1 thread 8x faster than 2 on a busy 2-core box)",
    )
    common.add_argument(
        "--device", default="cpu", help="torch device of the model (cpu, cuda, cuda:1, ...)"
    )
    common.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="larger images are refused"
    )
    common.add_argument(
        "--ocr-side",
        type=int,
        default=DEFAULT_OCR_SIDE,
        help=f"OCR text detection input, longer side in pixels (default {DEFAULT_OCR_SIDE}; raise it "
        "for large photos or small text)",
    )

    ob = sub.add_parser("obfuscate", parents=[common], help="hide chosen attributes in images")
    ob.add_argument("inputs", nargs="+", help="files, folders or globs")
    ob.add_argument("--out", required=True, help="output folder")
    ob.add_argument(
        "--hide",
        help="attribute ids to hide, comma-separated (text attributes work without --model: their "
        "lines are read and typed; the others need --model)",
    )
    ob.add_argument(
        "--hide-all",
        help="by kind: faces, text (every line), people, pii (every line typed as private text)",
    )
    ob.add_argument(
        "--typer",
        help="the learned line typer (data/text/typer.npz from the pipeline); without it text is "
        "typed by the recognizers alone",
    )
    ob.add_argument(
        "--text-typing",
        choices=["none", "recognizers", "learned", "both"],
        help=f"how text lines are typed (default {DEFAULTS.text_typing}; none: the model's "
        "attention decides, as for the other attributes)",
    )
    ob.add_argument(
        "--type-threshold",
        type=float,
        help=f"a line is hidden when a chosen attribute scores at least this (default "
        f"{DEFAULTS.type_threshold}; the typing decision is 0.5, so uncertain lines are hidden)",
    )
    ob.add_argument("--allow", help="texts never hidden by typing, comma-separated")
    ob.add_argument(
        "--prefs", help="YAML preferences: hide, hide_all, style, thresholds, margin_px, ..."
    )
    ob.add_argument("--style", choices=["solid", "pixelate", "blur"], help="default solid")
    ob.add_argument(
        "--block-px", type=int, help="pixelate: minimum block side (never below 1/6 of a region)"
    )
    ob.add_argument(
        "--margin",
        type=int,
        help=f"pixels added around every hidden region (default {DEFAULTS.margin_px})",
    )
    ob.add_argument(
        "--threshold",
        type=float,
        help=f"attribute probability from which it is hidden (default {DEFAULTS.class_threshold})",
    )
    ob.add_argument(
        "--bg-threshold",
        type=float,
        help=f"map value from which a pixel belongs to an attribute (default {DEFAULTS.bg_threshold})",
    )
    ob.add_argument(
        "--suffix", default="", help="added to output names (needed when --out is an input folder)"
    )
    ob.add_argument(
        "--verify", action="store_true", help="red-team the outputs with OCR and the face detector"
    )
    ob.add_argument(
        "--verify-side",
        type=int,
        default=VERIFY_OCR_SIDE,
        help=f"OCR input size of the red team (default {VERIFY_OCR_SIDE})",
    )
    ob.add_argument("--report", help=f"JSON report path (default OUT/{REPORT_NAME})")
    ob.add_argument("--workers", type=int, default=1, help="parallel processes")
    ob.add_argument("--no-progress", action="store_true")
    ob.set_defaults(run=cmd_obfuscate)

    sc = sub.add_parser("score", parents=[common], help="privacy score and attribute probabilities")
    sc.add_argument("inputs", nargs="+")
    sc.add_argument("--threshold", type=float, default=DEFAULTS.class_threshold)
    sc.add_argument("--json", action="store_true")
    sc.add_argument(
        "--typer",
        help="the learned line typer (data/text/typer.npz) for a model with refined priors; "
        "without it lines are typed by the recognizers alone",
    )
    sc.set_defaults(run=cmd_score)

    at = sub.add_parser(
        "attributes", parents=[common], help="the model's attributes and mask types"
    )
    at.add_argument("--json", action="store_true")
    at.set_defaults(run=cmd_attributes)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``privobfnet`` console script."""
    args = parser().parse_args(argv)
    configure_logging(-1 if args.quiet else args.verbose)  # neither: $PRIVOBFNET_LOG_LEVEL or info
    log.debug("privobfnet %s: %s", __version__, {k: v for k, v in vars(args).items() if k != "run"})
    if args.command in ("score", "attributes") and not args.model:
        parser().error(f"{args.command} needs --model")
    try:
        with tempfile.TemporaryDirectory(
            prefix="privobfnet-model-"
        ) as download_dir:  # a models:/ URI's files
            args.download_dir = download_dir
            return args.run(args)
    except (UsageError, PreferencesError, FileNotFoundError, ValueError) as exc:
        print(f"privobfnet {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
