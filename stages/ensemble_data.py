"""What the stages after `masks` share: where the ensemble checkpoint is, and each image's prior masks."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from privobfnet.config import Config

ENSEMBLE_CHECKPOINT = Path("checkpoints/ensemble/final.pt")


def mask_paths(cfg: Config) -> dict[str, tuple[Path | None, Path | None]]:
    """image_id -> (human mask PNG, text mask PNG) from the masks stage's index; None where not computed."""
    masks_dir = Path(cfg.masks.out_dir)
    index = pd.read_parquet(masks_dir / "index.parquet")

    def resolve(path: object) -> Path | None:  # index paths are relative to the project or to the masks folder
        if not isinstance(path, str):
            return None
        return Path(path) if Path(path).is_absolute() or Path(path).exists() else masks_dir / path

    return {row.image_id: (resolve(row.human_path), resolve(row.text_path)) for row in index.itertuples()}
