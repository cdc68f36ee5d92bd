"""Stage `weights`: fetch (or check the hand-placed) ImageNet weights the profile's models start from."""

from __future__ import annotations

import json
from pathlib import Path

from ops.fetch import WEIGHTS, fetch_weights
from ops.outputs import WEIGHTS_DIR
from ops.params import load_params
from ops.tracking import stage_run
from privobfnet.config import Config, ConfigError
from privobfnet.io import atomic_write_text
from privobfnet.logs import configure_logging


def required_weights(cfg: Config) -> list[str]:
    """Catalogue names of the weights the train and deeplab sections ask for (none when from scratch)."""
    names = []
    for section in (cfg.train, cfg.deeplab):
        if section.pretrained is None:
            continue
        if section.backbone not in WEIGHTS:
            raise ConfigError(
                f"{section.backbone}: no ImageNet weights are known for this backbone"
            )
        expected = WEIGHTS_DIR / WEIGHTS[section.backbone].file
        if Path(section.pretrained) != expected:
            raise ConfigError(
                f"pretrained: {section.pretrained} should be {expected} for {section.backbone}"
            )
        names.append(section.backbone)
    return sorted(set(names))


def main(cfg: Config) -> dict:
    """Make ``data/weights/`` hold every file the profile needs; returns a summary."""
    with stage_run("weights", cfg) as run:
        names = required_weights(cfg)
        WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        summary = fetch_weights(names, WEIGHTS_DIR, cfg.download) if names else {"files": 0}
        summary["weights"] = names
        atomic_write_text(WEIGHTS_DIR / "weights.json", json.dumps(summary, indent=2) + "\n")
        run.log_metrics(summary)
    return summary


if __name__ == "__main__":
    configure_logging()
    main(load_params())
