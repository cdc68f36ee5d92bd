"""One file in, one file out (or none, fail-closed), and the report record that says what happened."""

from __future__ import annotations

import io
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from privobfnet.obfuscate.codec import decode_upright, encode, output_format, write_atomic
from privobfnet.obfuscate.engine import Obfuscator

STEPS = ("decode", "ocr", "face_person", "model", "compose", "encode", "verify")


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
        write_atomic(target, data)
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
