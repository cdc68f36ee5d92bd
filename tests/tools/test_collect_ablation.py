"""Tests of collect_ablation."""

from __future__ import annotations

from tools.collect_ablation import parse_experiments


def test_parse_experiments_reads_dvc_exp_show_json():
    def record(rev, name, use_cropped, pearson):
        train = {
            "use_cropped": use_cropped,
            "use_privacy": True,
            "use_attribute": True,
            "use_mask_weighting": True,
        }
        metrics = {
            "reports/metrics/evaluate.json": {"data": {"privacy": {"test": {"pearson": pearson}}}},
            "reports/metrics/pseudo_labels.json": {
                "data": {"splits": {"train": {"cam_miou": pearson / 4, "masks_only_cam_miou": 0.1}}}
            },
        }
        return {
            "rev": rev,
            "name": name,
            "data": {
                "rev": rev,
                "params": {
                    "params.yaml": {
                        "data": {
                            "profile": "default",
                            "seed": 2,
                            "train": train,
                            "deeplab": {"labels": "pseudo"},
                        }
                    }
                },
                "metrics": metrics,
            },
        }

    unfinished = {"rev": "u", "name": "queued", "data": {"rev": "u", "params": {}, "metrics": {}}}
    running = record(
        "workspace", "running", False, 0.9
    )  # as `dvc exp show` lists a running one: its copy's data
    failed = {
        **record("f", "killed", False, 0.9),
        "error": {"msg": "Experiment run failed", "type": ""},
    }
    shown = [
        {**record("workspace", None, True, 0.3), "experiments": None},
        {
            **record("head", "main", True, 0.3),
            "experiments": [  # a commit whose metrics predate its params
                {"revs": [record("abc", "exp-1", False, 0.7), unfinished]},
                {"executor": {"state": "running"}, "revs": [running]},
                {"executor": {"state": "failed"}, "revs": [failed]},
                {"executor": {"state": "failed"}, "revs": [record("g", "failed-run", False, 0.9)]},
                {"revs": [record("def", "exp-2", True, 0.8)]},
            ],
        },
        {
            **record("older", None, True, 0.3),
            "experiments": [{"revs": [record("def", "exp-2", True, 0.8)]}],
        },
    ]
    rows = parse_experiments(shown)
    assert sorted(
        (r["switches"]["use_cropped"], r["privacy"]["test"]["pearson"]) for r in rows
    ) == [
        (False, 0.7),
        (True, 0.8),
    ]  # experiments only, not the commits or the workspace; exp-2 listed twice: one row
    assert sorted(r["cam_miou"]["train"] for r in rows) == [0.175, 0.2]
    assert all(r["seed"] == 2 and r["masks_only_cam_miou"] == {"train": 0.1} for r in rows)


def test_only_experiments_of_the_workspace_configuration_are_collected():
    """Runs of an older profile (other sizes, another backbone) are no rows of today's tables; runs that differ
    only in the seed, the Table 4 switches, the DeepLab labels or Model-Cropped's training are."""

    def record(rev, seed, backbone, labels="pseudo", use_cropped=True, **hypothesis):
        train = {
            "backbone": backbone,
            "use_cropped": use_cropped,
            "use_privacy": True,
            "use_attribute": True,
            "use_mask_weighting": True,
            "crop_target": "paper",
            "crop_size": 224,
            "loss_weights": {"image": 10.0, "cropped": 1.0},
            **hypothesis,
        }
        params = {
            "profile": "default",
            "seed": seed,
            "train": train,
            "deeplab": {"labels": labels, "lr": 0.001},
        }
        metrics = {
            "reports/metrics/evaluate.json": {"data": {"privacy": {"test": {"pearson": seed / 10}}}}
        }
        return {
            "rev": rev,
            "name": rev,
            "data": {"rev": rev, "params": {"params.yaml": {"data": params}}, "metrics": metrics},
        }

    workspace = record("w", 0, "lite0")["data"]["params"]["params.yaml"]["data"]
    shown = [
        record("a", 1, "lite0"),
        record("b", 2, "lite0", labels="ground_truth"),
        record("c", 0, "lite0", use_cropped=False),
        record("old", 3, "tiny"),
        record(
            "h",
            1,
            "lite0",
            crop_target="l2g",
            crop_size=160,
            loss_weights={"image": 1.0, "cropped": 1.0},
        ),
    ]
    listed = [{"rev": "workspace", "experiments": [{"revs": shown}]}]
    rows = parse_experiments(listed, workspace)
    assert sorted(r["name"] for r in rows) == [
        "a",
        "b",
        "c",
        "h",
    ]  # `make hypotheses` varies Model-Cropped's training
    assert [
        (r["crop_target"], r["crop_size"], r["loss_weights"]["image"])
        for r in rows
        if r["name"] == "h"
    ] == [("l2g", 160, 1.0)]
    assert len(parse_experiments(listed)) == 5  # without a reference: every finished run


def test_collection_keeps_committed_rows_of_the_configuration_and_records_deeplab_iterations():
    """A fresh clone lists no experiment (DVC keeps them as local refs): the committed rows of today's configuration
    stay, those of another configuration go, and a run listed again is one row. DeepLab's iterations are recorded,
    not part of the configuration."""
    from tools.collect_ablation import configuration, merge

    def params(iterations=800, backbone="lite0", seed=0):
        return {
            "profile": "default",
            "seed": seed,
            "deeplab": {"labels": "pseudo", "iterations": iterations},
            "train": {
                "backbone": backbone,
                "use_cropped": True,
                "use_privacy": True,
                "use_attribute": True,
                "use_mask_weighting": True,
            },
        }

    def record(rev, **kw):
        metrics = {
            "reports/metrics/evaluate.json": {"data": {"privacy": {"test": {"pearson": 0.5}}}}
        }
        return {
            "rev": rev,
            "name": rev,
            "data": {
                "rev": rev,
                "params": {"params.yaml": {"data": params(**kw)}},
                "metrics": metrics,
            },
        }

    reference = params()
    assert (
        configuration(params(iterations=300))
        == configuration(reference)
        != configuration(params(backbone="tiny"))
    )
    assert configuration(params(seed=2)) == configuration(reference)
    listed = parse_experiments([{"experiments": [{"revs": [record("new", seed=1)]}]}], reference)
    assert [(r["name"], r["deeplab_iterations"], r["configuration"]) for r in listed] == [
        ("new", 800, configuration(reference))
    ]
    committed = parse_experiments(
        [
            {
                "experiments": [
                    {
                        "revs": [
                            record("old", iterations=300),
                            record("tiny", backbone="tiny"),
                            record("new", seed=1),
                        ]
                    }
                ]
            }
        ]
    )
    rows, kept = merge(committed, listed, reference)
    assert (
        sorted(r["name"] for r in rows) == ["new", "old"] and kept == 1
    )  # "new" was committed and listed again
    stale = [
        {**committed[-1], "privacy": {"test": {"pearson": 0.1}}}
    ]  # collected while it ran, before its metrics
    assert [r["privacy"]["test"]["pearson"] for r in merge(stale, listed, reference)[0]] == [0.5]
    assert merge([], [], reference) == ([], 0)
