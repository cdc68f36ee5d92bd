"""Stage `download`: generate SynthPriv, or fetch and verify a real data set, into data/raw/; with
``masks.saliency``, check the saliency maps placed by hand beside it (``privobfnet.data.saliency``)."""

from __future__ import annotations

import time
from pathlib import Path

from ops.outputs import write_metrics
from ops.params import load_params
from ops.tracking import stage_run
from privobfnet.config import Config
from privobfnet.data.readers import dataset_root
from privobfnet.data.saliency import check_saliency_folder, saliency_dir
from privobfnet.logs import configure_logging


def main(cfg: Config) -> dict:
    """Produce ``<raw_dir>/<dataset>``; returns the metrics written to reports/metrics/download.json."""
    root = Path(dataset_root(cfg.data))
    with stage_run("download", cfg) as run:
        start = time.perf_counter()
        if cfg.data.dataset == "synthpriv":
            from privobfnet.data.synthpriv import write_synthpriv

            summary = write_synthpriv(root, cfg)
        else:
            from ops.fetch import fetch_dataset

            summary = fetch_dataset(
                cfg.data.dataset, Path(cfg.data.raw_dir), cfg.download, splits=list(cfg.data.splits)
            )
            if cfg.data.dataset == "coco":
                from privobfnet.data.readers.coco import render_semantic_masks

                summary["masks_rendered"] = {
                    split: render_semantic_masks(root, split, overlap=cfg.data.coco_overlap)
                    for split in cfg.data.splits
                }
        if cfg.masks.saliency:  # placed by hand: Google Drive cannot be fetched unattended
            summary["saliency_maps"] = check_saliency_folder(saliency_dir(root), cfg.data.dataset)
        metrics = {"dataset": cfg.data.dataset, **summary}
        run_facts = {"seconds": round(time.perf_counter() - start, 2)}
        write_metrics("download", metrics, run_facts)
        run.log_metrics({**metrics, **run_facts})
    return metrics


if __name__ == "__main__":
    configure_logging()
    main(load_params())
