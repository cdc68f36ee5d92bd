"""Milliseconds per 640 x 480 image through `privobfnet obfuscate`, step by step, on this machine.

    .venv/bin/python bench/obfuscate.py [--images 16] [--threads 2] [--ocr-side 640] [--sweep 320,480,640,960]

Images: 640 x 480 JPEG "photos of documents" (five private strings from SynthPriv's generators in
DejaVu fonts at several sizes and rotations, over the astronaut photo's face), decoded from disk like
user input. The run hides two text attributes with Model-Image (checkpoints/ensemble/final.pt if
present, else an untrained network of the default profile's architecture: its speed does not
depend on its weights) plus --hide-all faces, and --verify red-teams each output.

The text attributes are read (detection + recognition: the "ocr" step) and typed ("typing": the
recognizers, plus the learned typer data/text/typer.npz when the pipeline has written it).

Printed: median and p90 ms of each step (decode, OCR, face/person, typing, model, compose, encode,
verify) and end to end without verify, as a ratio of the reference measured in the same run:
rapidocr's text detection at its own default settings. When presidio-image-redactor is installed
(a bench-only comparison, not a dependency: ``pip install presidio-image-redactor`` with Tesseract
and a spaCy model), its ``ImageRedactorEngine().redact`` on the same images is timed in the same run
and the ratio printed. ``--sweep``
lists OCR detection input sizes (longer side) to trade, on the 640 x 480 documents and on SynthPriv
test images: for each, detection ms and the share of the strings the reader (detection +
recognition at 960) reads before that it still reads after --hide-all text (the leak rate).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: ops, tools

from ops.params import resolve_profile
from privobfnet.config import parse_config
from privobfnet.data.mask_types import load_mask_types
from privobfnet.data.synthpriv import ATTRIBUTE_IDS, generate_sample
from privobfnet.evaluation.redaction import strings_read
from privobfnet.masks.text import rapidocr_model_path
from privobfnet.models.checkpoints import ensemble_checkpoint, model_meta
from privobfnet.models.privobfnet import build_model
from privobfnet.obfuscate import (
    Obfuscator,
    Preferences,
    TextReader,
    build_detectors,
    build_typer,
    detector_kinds,
    load_model,
    obfuscate_file,
)
from privobfnet.obfuscate.detect import DEFAULT_OCR_SIDE
from tools.obfuscate_example import document

REPO = Path(__file__).resolve().parents[1]
STEPS = ["decode", "ocr", "face_person", "typing", "model", "compose", "encode", "verify"]
TYPER = REPO / "data" / "text" / "typer.npz"


def default_checkpoint(folder: Path) -> Path:
    """The trained ensemble if there is one, else an untrained one of the default profile's shape."""
    trained = REPO / "checkpoints" / "ensemble" / "final.pt"
    if trained.is_file():
        return trained
    t = parse_config(resolve_profile("default", REPO / "profiles")).train
    types = load_mask_types("synthpriv", ATTRIBUTE_IDS)
    nets = [
        build_model(
            backbone=t.backbone,
            tiny_width=t.tiny_width,
            pretrained=None,
            mask_types=types,
            background_channel=False,
            use_mask_weighting=True,
        )
        for _ in range(2)
    ]
    meta = model_meta(
        backbone=t.backbone,
        tiny_width=t.tiny_width,
        mask_types=types,
        class_names=ATTRIBUTE_IDS,
        background_channel=False,
        use_mask_weighting=True,
        input_size=t.input_size,
        dataset="synthpriv",
    )
    torch.save(ensemble_checkpoint(*nets, meta), folder / "final.pt")
    return folder / "final.pt"


def presidio_ms(paths: list[Path]) -> float | None:
    """Median ms of presidio-image-redactor's ImageRedactorEngine on the files, None if absent."""
    try:
        from presidio_image_redactor import ImageRedactorEngine
    except ImportError:
        return None
    engine = ImageRedactorEngine()
    engine.redact(Image.open(paths[0]))  # warm-up: spaCy and Tesseract load
    times = []
    for path in paths:
        start = time.perf_counter()
        engine.redact(Image.open(path))
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def reference_ms(images: list[np.ndarray], threads: int) -> float:
    """Median ms of rapidocr's text detection at its own default settings (the OCR floor)."""
    from rapidocr import RapidOCR

    engine = RapidOCR(
        params={
            "Global.use_cls": False,
            "Global.use_rec": False,
            "Global.log_level": "error",
            "Det.model_path": str(rapidocr_model_path()),
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        }
    )
    engine(images[0][:, :, ::-1].copy(), use_cls=False, use_rec=False)
    times = []
    for image in images:
        start = time.perf_counter()
        engine(np.ascontiguousarray(image[:, :, ::-1]), use_cls=False, use_rec=False)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=1, help="as `privobfnet obfuscate --threads` (default 1)"
    )
    parser.add_argument("--ocr-side", type=int, default=DEFAULT_OCR_SIDE)
    parser.add_argument(
        "--sweep", default="", help="OCR detection sizes to compare, e.g. 320,480,640,960"
    )
    parser.add_argument(
        "--synthpriv", type=int, default=40, help="SynthPriv test images in the sweep"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache_dir = os.environ.get("PRIVOBFNET_CACHE_DIR") or str(REPO / ".cache")
    rng = np.random.default_rng(0)
    docs = [document(rng) for _ in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n, (image, _) in enumerate(docs):
            Image.fromarray(image).save(folder / f"doc{n:03d}.jpg", quality=92)
        checkpoint = default_checkpoint(folder)
        model = load_model(checkpoint)
        prefs = Preferences(hide=("a19_name_full", "a49_phone"), hide_all=("faces",))
        typer = build_typer(prefs, model, TYPER if TYPER.is_file() else None)
        detectors = build_detectors(
            detector_kinds(prefs, model, typer) | {"face"},
            cache_dir=cache_dir,
            text_limit_side=args.ocr_side,
            threads=args.threads,
        )
        reader = TextReader(threads=args.threads)  # the red team at its own (larger) size
        obfuscator = Obfuscator(prefs, detectors=detectors, model=model, typer=typer, reader=reader)
        obfuscate_file(
            obfuscator,
            folder / "doc000.jpg",
            folder / "out" / "warm.jpg",
            max_pixels=10**8,
            verify=True,
        )
        records = [
            obfuscate_file(
                obfuscator,
                folder / f"doc{n:03d}.jpg",
                folder / "out" / f"doc{n:03d}.jpg",
                max_pixels=10**8,
                verify=True,
            )
            for n in range(args.images)
        ]
        failed = [r["error"] for r in records if r["error"]]
        if failed:
            raise SystemExit(f"benchmark images failed: {failed[:3]}")
        reference = reference_ms([image for image, _ in docs], args.threads)
        presidio = presidio_ms([folder / f"doc{n:03d}.jpg" for n in range(args.images)])
    print(
        f"{args.images} images 640 x 480, {args.threads} thread(s), OCR side {args.ocr_side}, model "
        f"{'trained' if 'checkpoints' in str(checkpoint) else 'untrained (default-profile shape)'}"
    )
    print(f"reference: rapidocr text detection at its defaults, median {reference:.0f} ms")
    print(f"{'step':<22} {'median ms':>9} {'p90 ms':>8} {'x ref':>6}")
    steps = {s: [r["timings_ms"].get(s, 0.0) for r in records] for s in STEPS}
    steps["end to end, no verify"] = [
        sum(r["timings_ms"].get(s, 0.0) for s in STEPS if s != "verify") for r in records
    ]
    for name, values in steps.items():
        median, p90 = float(np.median(values)), float(np.percentile(values, 90))
        print(f"{name:<22} {median:>9.1f} {p90:>8.1f} {median / reference:>6.2f}")
    ours = float(np.median(steps["end to end, no verify"]))
    print(
        f"typer: {'learned + recognizers' if TYPER.is_file() else 'recognizers alone'} "
        f"({typer.source if typer else 'off'})"
    )
    if presidio is None:
        print("presidio-image-redactor: not installed, no comparison")
    else:
        print(
            f"presidio-image-redactor, same images: median {presidio:.0f} ms; "
            f"privobfnet / presidio = {ours / presidio:.2f}"
        )
    if args.sweep:
        sides = [int(s) for s in args.sweep.split(",")]
        print("\n640 x 480 documents:")
        sweep(sides, docs, cache_dir, args.threads)
        cfg = parse_config(resolve_profile("default", REPO / "profiles"))
        samples = [generate_sample("test", i, cfg) for i in range(args.synthpriv)]
        print(f"\nSynthPriv test images ({cfg.synthpriv.image_size} px):")
        sweep(
            sides,
            [(s.image, [text for _, text in s.texts]) for s in samples if s.texts],
            cache_dir,
            args.threads,
        )


def sweep(sides: list[int], docs, cache_dir: str, threads: int) -> None:
    """Detection ms and leak rate of --hide-all text per OCR detection size (reader at 960)."""
    reader = TextReader(limit_side=960, threads=threads)
    readable = [
        strings_read(strings, [line.text for line in reader(image)]) for image, strings in docs
    ]
    total = sum(sum(r) for r in readable)
    print(f"OCR detection size sweep: {total} strings readable at 960 before hiding")
    print(f"{'side':>5} {'det ms':>7} {'leak rate':>9} {'lines':>6} {'hidden share':>12}")
    for side in sides:
        detectors = build_detectors(
            {"text"}, cache_dir=cache_dir, text_limit_side=side, threads=threads
        )
        obfuscator = Obfuscator(Preferences(hide_all=("text",), margin_px=4), detectors=detectors)
        times, leaked, lines, hidden = [], 0, 0, []
        for (image, strings), before in zip(docs, readable):
            outcome = obfuscator.process(image)
            times.append(outcome.timings["ocr"] * 1000)
            lines += len(outcome.detections.text_lines)
            hidden.append(float(outcome.hidden.mask.mean()))
            after = strings_read(strings, [line.text for line in reader(outcome.image)])
            leaked += sum(b and a for b, a in zip(before, after))
        print(
            f"{side:>5} {np.median(times):>7.1f} {leaked / max(1, total):>9.3f} {lines:>6} {np.mean(hidden):>12.3f}"
        )


if __name__ == "__main__":
    main()
