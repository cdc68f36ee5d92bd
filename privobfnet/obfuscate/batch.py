"""Files in, files out: one input file to one output (or none, fail-closed) with the report record
that says what happened, and many files over worker processes."""

from __future__ import annotations

import glob
import io
import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from privobfnet.config import Preferences
from privobfnet.io import atomic_write_bytes
from privobfnet.obfuscate.codec import decode_upright, encode, output_format
from privobfnet.obfuscate.detect import TextReader, build_detectors
from privobfnet.obfuscate.engine import Obfuscator, build_typer, detector_kinds, load_model

STEPS = ("decode", "ocr", "face_person", "typing", "model", "compose", "encode", "verify")


def obfuscate_file(
    obfuscator: Obfuscator,
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    max_pixels: int,
    verify: bool = False,
) -> dict:
    """Obfuscate ``source`` into ``target``; the report record. Never raises for a bad image.

    Fail-closed: when decoding, a detector, the model or the encoder fails, nothing is written
    and the record holds ``error``. The output is written atomically, then (``verify``) re-read
    and red-teamed; leaks go in ``leaks``; if the red team itself fails the output is removed.
    """
    record: dict = {"input": str(source), "output": None, "error": None}
    timings: dict[str, float] = {}
    try:
        start = time.perf_counter()
        image = decode_upright(source, max_pixels=max_pixels)
        timings["decode"] = time.perf_counter() - start
        outcome = obfuscator.process(image)
        timings.update(outcome.timings)
        start = time.perf_counter()
        data = encode(outcome.image, output_format(source))
        atomic_write_bytes(target, data)
        timings["encode"] = time.perf_counter() - start
        record.update(
            output=str(target),
            width=int(image.shape[1]),
            height=int(image.shape[0]),
            privacy_score=None
            if outcome.privacy_score is None
            else round(outcome.privacy_score, 4),
            attributes_found={k: round(v, 4) for k, v in outcome.attributes_found.items()},
            regions=[{**asdict(r), "box": list(r.box)} for r in outcome.hidden.regions],
            hidden_share=round(float(outcome.hidden.mask.mean()), 5),
            faces_found=len(outcome.detections.faces),
            text_lines_found=len(outcome.detections.text_lines),
            text_lines_typed=dict(Counter(t.type() for t in outcome.detections.typed if t.type())),
        )
        if verify:
            start = time.perf_counter()
            with Image.open(io.BytesIO(data)) as written:
                pixels = np.asarray(written.convert("RGB"))
            record["leaks"] = obfuscator.verify(pixels, outcome.hidden.mask)
            timings["verify"] = time.perf_counter() - start
    except Exception as exc:  # fail-closed: one image's failure is reported, never written
        if (
            record["output"] is not None
        ):  # the red team itself failed: an unverified output is withdrawn
            Path(target).unlink(missing_ok=True)
        record = {"input": str(source), "output": None, "error": f"{type(exc).__name__}: {exc}"}
    record["timings_ms"] = {k: round(v * 1000, 1) for k, v in timings.items()}
    return record


IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
}


class InputError(ValueError):
    """The inputs name no image (a glob that matches nothing, an empty folder)."""


def expand_inputs(specs: Sequence[str]) -> list[Path]:
    """Files, folders (their images, sorted) and globs -> input files, in order, without repeats."""
    found: list[Path] = []
    for spec in specs:
        if os.path.isdir(spec):
            items = sorted(
                p
                for p in Path(spec).iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif glob.has_magic(spec):
            items = sorted(
                Path(p)
                for p in glob.glob(spec, recursive=True)
                if os.path.isfile(p) and Path(p).suffix.lower() in IMAGE_SUFFIXES
            )
            if not items:
                raise InputError(f"{spec}: no image matches")
        else:
            items = [Path(spec)]  # a missing file is reported as that image's error
        found += [p for p in items if p not in found]
    if not found:
        raise InputError("no input images")
    return found


# ---- one worker per process -------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to build its own detectors and model (picklable)."""

    prefs: Preferences
    checkpoint: str | None
    cache_dir: str
    ocr_side: int
    verify_side: int
    threads: int
    verify: bool
    max_pixels: int
    device: str
    typer: str | None = None  # the learned line typer file (the type_text stage's typer.npz)


_WORKER: dict = {}


def build_obfuscator(settings: WorkerSettings) -> Obfuscator:
    """Model, detectors and (for --verify) OCR recognition, built once per process."""
    model = load_model(settings.checkpoint, settings.device) if settings.checkpoint else None
    typer = build_typer(settings.prefs, model, settings.typer)
    kinds = detector_kinds(settings.prefs, model, typer) | ({"face"} if settings.verify else set())
    detectors = build_detectors(
        kinds,
        cache_dir=settings.cache_dir,
        text_limit_side=settings.ocr_side,
        threads=settings.threads,
    )
    reader = (
        TextReader(limit_side=settings.verify_side, threads=settings.threads)
        if settings.verify
        else None
    )
    return Obfuscator(
        settings.prefs,
        detectors=detectors,
        model=model,
        typer=typer,
        reader=reader,
        device=settings.device,
    )


def _init_worker(settings: WorkerSettings) -> None:
    torch.set_num_threads(settings.threads)
    _WORKER["obfuscator"], _WORKER["settings"] = build_obfuscator(settings), settings


def _work(job: tuple[str, str]) -> dict:
    settings = _WORKER["settings"]
    return obfuscate_file(
        _WORKER["obfuscator"],
        job[0],
        job[1],
        max_pixels=settings.max_pixels,
        verify=settings.verify,
    )


def run_jobs(
    jobs: list[tuple[str, str]], settings: WorkerSettings, workers: int, *, progress: bool
) -> list[dict]:
    """Every job's record, in job order; ``workers`` processes (this one when 1)."""
    bar = tqdm(total=len(jobs), desc="obfuscate", unit="img", disable=not progress, file=sys.stderr)
    records: list[dict] = []
    with bar:
        if workers <= 1:
            threads = (
                torch.get_num_threads()
            )  # restored after: the caller may be a longer-lived process
            try:
                _init_worker(settings)
                for job in jobs:
                    records.append(_work(job))
                    bar.update(1)
            finally:
                torch.set_num_threads(threads)
        else:
            with ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(settings,),
            ) as pool:
                for record in pool.map(_work, jobs):
                    records.append(record)
                    bar.update(1)
    return records
