"""Test stand-ins for the `masks` stage's output, in the agreed format, made from SynthPriv's truth.

- human mask: SynthPriv's ``SimulatedHumanParser/<id>.png`` (what the masks stage uses on SynthPriv);
- text mask: the union of the ground-truth text-attribute regions, dilated by ``masks.text_margin_px``;
- ``index.parquet``: image_id, split, human_path, text_path, face_boxes (JSON, empty here).

Much faster than the real stage (no OCR), so the ensemble's tests do not depend on its backends.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from privobfnet.config import Config
from privobfnet.data.manifest import read_manifest
from privobfnet.data.synthpriv import ATTRIBUTES

TEXT_VALUES = [
    i + 1 for i, a in enumerate(ATTRIBUTES) if a.mask_type == "text"
]  # class-mask values


def write_fixture_masks(cfg: Config, root: Path = Path(".")) -> Path:
    """Write ``<root>/<masks.out_dir>`` for every split of the manifests; returns that folder."""
    out = root / cfg.masks.out_dir
    (out / "human").mkdir(parents=True, exist_ok=True)
    (out / "text").mkdir(parents=True, exist_ok=True)
    raw = root / cfg.data.raw_dir / cfg.data.dataset
    rows = []
    for split in cfg.data.splits:
        manifest = read_manifest(root / cfg.data.manifest_dir / f"{split}.parquet")
        for image_id, mask_path in zip(manifest["image_id"], manifest["mask_path"]):
            human = Image.open(raw / "SimulatedHumanParser" / f"{image_id}.png").convert("L")
            classes = np.asarray(Image.open(root / mask_path))
            text = Image.fromarray(np.isin(classes, TEXT_VALUES).astype(np.uint8) * 255, "L")
            if cfg.masks.text_margin_px > 0:
                text = text.filter(ImageFilter.MaxFilter(2 * cfg.masks.text_margin_px + 1))
            human_path, text_path = (
                out / "human" / f"{image_id}.png",
                out / "text" / f"{image_id}.png",
            )
            human.save(human_path)
            text.save(text_path)
            rows.append(
                {
                    "image_id": image_id,
                    "split": split,
                    "human_path": str(human_path.relative_to(root)),
                    "text_path": str(text_path.relative_to(root)),
                    "face_boxes": "[]",
                }
            )
    pd.DataFrame(rows).to_parquet(out / "index.parquet", index=False)
    return out
