"""Bookkeeping of a masks run (pure): per-image results in, metrics and the failure summary out."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np


@dataclass
class MaskRunStats:
    """What the workers reported, image by image."""

    seconds: dict[str, float] = field(
        default_factory=lambda: defaultdict(float)
    )  # kind -> backend seconds
    computed: dict[str, int] = field(
        default_factory=lambda: defaultdict(int)
    )  # kind -> images computed
    coverage: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # image_id -> kind -> coverage
    failures: list[dict] = field(default_factory=list)  # {image_id, split, backend, error}
    images_computed: int = 0  # images where at least one backend ran

    def add(self, image_id: str, split: str, result: dict) -> list[dict]:
        """Record one worker result; returns its failure records."""
        for kind, seconds in result["seconds"].items():
            self.seconds[kind] += seconds
            self.computed[kind] += 1
        self.images_computed += bool(result["seconds"])
        self.coverage[image_id] = result["coverage"]
        records = [
            {"image_id": image_id, "split": split, "backend": b, "error": e}
            for b, e in result["errors"]
        ]
        self.failures += records
        return records

    @property
    def failed_ids(self) -> list[str]:
        """Images with at least one failure, sorted."""
        return sorted({f["image_id"] for f in self.failures})


def summarize(
    stats: MaskRunStats,
    *,
    backend_names: dict[str, str],
    faces: dict[str, list] | None,
    image_ids: list[str],
    wall_seconds: float,
    workers: int,
    resumed: bool,
) -> tuple[dict, dict]:
    """-> (metrics, run facts). Metrics: mask coverage (mean share of pixels >= 0.5) per backend,
    faces per image, counts: the same for every run over the same data. Run facts: what varies
    from run to run: seconds and images/s (per backend: its images over its own seconds, i.e. per
    process), how many images this run computed, whether it resumed."""
    backends, speeds = {}, {}
    for kind, name in backend_names.items():
        n, seconds = stats.computed[kind], stats.seconds[kind]
        speeds[f"{kind}.{name}"] = {
            "images": n,
            "seconds": round(seconds, 3),
            "images_per_s": round(n / seconds, 2) if seconds else None,
        }
        entry = {}
        if kind == "face":
            counts = [len((faces or {}).get(i, [])) for i in image_ids]
            entry["faces_per_image"] = round(float(np.mean(counts)), 4) if counts else None
            entry["images_with_faces"] = (
                round(float(np.mean([c > 0 for c in counts])), 4) if counts else None
            )
        else:
            values = [c[kind] for c in stats.coverage.values() if kind in c]
            entry["coverage"] = round(float(np.mean(values)), 4) if values else None
        backends[f"{kind}.{name}"] = entry
    computed = stats.images_computed
    metrics = {"images": len(image_ids), "failed": len(stats.failed_ids), "backends": backends}
    run_facts = {
        "computed": computed,
        "resumed": resumed,
        "wall_seconds": round(wall_seconds, 3),
        "workers": workers,
        "backends": speeds,
        "images_per_s": round(computed / wall_seconds, 2)
        if wall_seconds > 0 and computed
        else None,
    }
    return metrics, run_facts


def failure_summary(
    failures: list[dict], *, n_failed: int, budget: int, failures_file: str, listed: int = 10
) -> str:
    """The readable list a run over its failure budget ends with."""
    lines = [f"masks: {n_failed} image(s) failed, masks.failure_budget allows {budget}:"]
    lines += [
        f"  {f['image_id']} ({f['split']}) {f['backend']}: {f['error']}" for f in failures[:listed]
    ]
    if len(failures) > listed:
        lines.append(f"  ... and {len(failures) - listed} more")
    lines.append(f"all in {failures_file}; finished masks are kept and a re-run resumes")
    return "\n".join(lines)
