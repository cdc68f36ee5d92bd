"""tools.compare_outputs: which stage's outputs differ between two runs, and by how much."""

from __future__ import annotations

import json

from tools.compare_outputs import main


def _run(root, miou: float, mask: bytes, seconds: float) -> None:
    (root / "data/masks/text").mkdir(parents=True)
    (root / "data/masks/text/a.png").write_bytes(mask)
    (root / "reports/metrics").mkdir(parents=True)
    (root / "reports/metrics/evaluate.json").write_text(
        json.dumps({"segmentation": {"val": {"miou": miou}}})
    )
    (root / "reports/runs").mkdir(parents=True)
    (root / "reports/runs/evaluate.json").write_text(json.dumps({"seconds": seconds}))


def test_identical_runs_pass_whatever_their_timings(tmp_path, capsys):
    _run(tmp_path / "a", 0.25, b"png", seconds=1.0)
    _run(tmp_path / "b", 0.25, b"png", seconds=9.0)
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "masks           identical" in capsys.readouterr().out


def test_the_differing_stage_and_metric_are_named(tmp_path, capsys):
    _run(tmp_path / "a", 0.25, b"png", seconds=1.0)
    _run(tmp_path / "b", 0.2625, b"png!", seconds=1.0)
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert "masks           1 files differ: data/masks/text/a.png" in out
    assert "| evaluate.segmentation.val.miou | 0.25 | 0.2625 | +0.0125 |" in out
