"""Typed config: strict parsing, profiles and their merge."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import yaml

from ops.params import load_params, resolve_profile, write_params
from privobfnet.config import (
    ConfigError,
    Preferences,
    launcher_world_size,
    merge,
    parse_config,
)
from privobfnet.data.mask_types import load_mask_types
from tests.conftest import REPO

# every profile a user can pick: profiles/*.yaml less the shared layers (named _*.yaml)
PROFILES = sorted(p.stem for p in (REPO / "profiles").glob("*.yaml") if not p.stem.startswith("_"))


def test_the_profiles_are_found():
    assert {"default", "ci", "paper_vispr", "paper_voc", "paper_coco"} <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_parses_and_changes_something(name):
    params = resolve_profile(name, REPO / "profiles")
    cfg = parse_config(params)
    load_mask_types(cfg.data.dataset, [])  # its data set has a mask-type table
    default = resolve_profile("default", REPO / "profiles")
    differs = {k for k in params if k != "profile" and params[k] != default[k]}
    assert name == "default" or differs, f"profile {name} changes nothing but its name"


def test_the_tools_default_preferences_are_the_default_profiles_redact_params():
    """What the redact stage measures is what a CLI user gets: every preference's default equals the
    default profile's ``redact`` value (``hide`` aside: which attributes to hide is the user's choice)."""
    redact = parse_config(resolve_profile("default", REPO / "profiles")).redact
    defaults = Preferences()
    for field in dataclasses.fields(Preferences):
        if field.name != "hide":
            assert getattr(defaults, field.name) == getattr(redact, field.name), field.name
    assert redact.preferences() == dataclasses.replace(defaults, hide=redact.hide)


def test_paper_profiles_carry_the_papers_settings():
    for name in ("paper_vispr", "paper_voc", "paper_coco"):
        t = parse_config(resolve_profile(name, REPO / "profiles")).train
        assert (t.input_size, t.crop_size, t.n_crops, t.batch_size) == (448, 320, 6, 4)
        # the paper's "decay at epoch 6" as L2G applies it: from 0-based epoch 5 on
        assert (t.lr, t.weight_decay, t.epochs, t.lr_decay_epoch) == (0.002, 0.0005, 10, 5)
        assert t.backbone == "resnet38"
        assert t.loss_weights == {"image": 10.0, "cropped": 1.0, "privacy": 1.0, "attribute": 1.0}
    voc = parse_config(resolve_profile("paper_voc", REPO / "profiles"))
    assert voc.data.splits == {"train_aug": 10582, "train": 1464, "val": 1449}
    # deeplab-pytorch's VOC initialisation: DeepLab's COCO-trained MSRA ResNet-101
    assert (voc.deeplab.backbone, voc.deeplab.pretrained) == (
        "resnet101_msra",
        "data/weights/deeplabv1_resnet101-coco.pth",
    )


@pytest.mark.parametrize("name", ["paper_vispr", "paper_voc", "paper_coco"])
def test_paper_profiles_follow_the_reference_protocol(name):
    """L2G 0ec2504 for the ensemble, deeplab-pytorch 4219467 for DeepLabV2 (docs/protocol.md)."""
    cfg = parse_config(resolve_profile(name, REPO / "profiles"))
    t, d = cfg.train, cfg.deeplab
    # eq. 2's target: C + 1 channels, max-normalised, argmax, background above 0.001
    assert (t.crop_target, t.l2g_bg_threshold) == ("l2g", 0.001)
    assert t.crop_placement == "corners_random"  # 4 corners + random
    assert t.augment == "l2g"  # short side 512, random 448 crop, ColorJitter, no flip
    assert t.lr_decay_epoch == 5  # reduce_lr at the start of the sixth epoch
    assert cfg.masks.saliency is (name != "paper_vispr")  # L2G's Sal/ maps (none for VISPR)
    init = (
        ("resnet101_msra", "data/weights/deeplabv1_resnet101-coco.pth")
        if name == "paper_voc"
        else ("resnet101", "data/weights/resnet101-imagenet.pth")
    )
    assert (d.backbone, d.pretrained) == init  # VOC from DeepLab's COCO-trained ResNet-101
    assert t.optimizer == "l2g"  # Nesterov; biases 2x, new weights 10x, new biases 20x
    assert cfg.pseudo_labels.scales == [0.5, 1.0, 1.5, 2.0]
    assert d.scale_choices == [0.5, 0.75, 1.0, 1.25, 1.5]
    assert d.optimizer == "deeplab_pytorch"  # ASPP biases 20x without weight decay
    assert d.msc_scales == [0.5, 0.75]  # MSC: 1, 0.5, 0.75, max fusion
    assert d.crf  # test-time CRF with DEEPLAB_CRF
    assert (d.crop_size, d.lr, d.momentum, d.weight_decay, d.poly_power) == (
        321,
        0.00025,
        0.9,
        0.0005,
        0.9,
    )
    schedule = (20, 50000) if name == "paper_coco" else (10, 20000)
    assert (d.batch_size, d.iterations) == schedule


def test_committed_params_yaml_is_a_valid_profile():
    cfg = load_params(REPO / "params.yaml")
    assert cfg == parse_config(resolve_profile(cfg.profile, REPO / "profiles"))


def test_unknown_key_is_named():
    raw = resolve_profile("default", REPO / "profiles")
    raw["train"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"unknown key\(s\): train\.learning_rate"):
        parse_config(raw)


def test_missing_key_is_named():
    raw = resolve_profile("default", REPO / "profiles")
    del raw["synthpriv"]["parser_noise"]["miss_limb_prob"]
    with pytest.raises(ConfigError, match=r"synthpriv\.parser_noise\.miss_limb_prob"):
        parse_config(raw)


@pytest.mark.parametrize(
    "section, key, value, pattern",
    [
        ("train", "epochs", "ten", r"train\.epochs: expected an integer"),
        ("train", "epochs", True, r"train\.epochs: expected an integer"),
        ("train", "lr", "fast", r"train\.lr: expected a number"),
        ("data", "dataset", "imagenet", r"data\.dataset: 'imagenet' is not one of"),
        ("data", "splits", ["train"], r"data\.splits: expected a mapping"),
        ("train", "crop_size", 999, r"train\.crop_size \(999\) exceeds"),
    ],
)
def test_wrong_type_is_named(section, key, value, pattern):
    raw = resolve_profile("default", REPO / "profiles")
    raw[section][key] = value
    with pytest.raises(ConfigError, match=pattern):
        parse_config(raw)


def test_ints_become_floats_but_not_the_reverse():
    raw = resolve_profile("default", REPO / "profiles")
    raw["train"]["lr"] = 1
    assert parse_config(raw).train.lr == 1.0 and isinstance(parse_config(raw).train.lr, float)


def test_merge_rejects_unknown_override_and_replaces_free_mappings():
    base = {"data": {"splits": {"train": 5, "val": 2}, "dataset": "synthpriv"}}
    merged = merge(base, {"data": {"splits": {"train_aug": 9}}})
    assert merged["data"]["splits"] == {"train_aug": 9}
    with pytest.raises(ConfigError, match="data.nonsense"):
        merge(base, {"data": {"nonsense": 1}})


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ConfigError, match="no such profile.*paper_voc"):
        resolve_profile("paper_imagenet", REPO / "profiles")


def test_load_params_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({"profile": "x"}))
    with pytest.raises(ConfigError, match=f"{bad}: missing key"):
        load_params(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_write_params_round_trips(tmp_path):
    params = resolve_profile("paper_coco", REPO / "profiles")
    write_params(params, tmp_path / "params.yaml")
    assert load_params(tmp_path / "params.yaml") == parse_config(params)


def test_use_profile_command(tmp_path):
    (tmp_path / "profiles").symlink_to(REPO / "profiles")
    ok = subprocess.run(
        [sys.executable, "-m", "tools.use_profile", "ci"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert ok.returncode == 0, ok.stderr
    assert load_params(tmp_path / "params.yaml").profile == "ci"
    bad = subprocess.run(
        [sys.executable, "-m", "tools.use_profile", "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode == 2 and "no such profile" in bad.stderr


@pytest.mark.parametrize(
    "dotted,value,message",
    [
        ("train.checkpoint_every", 0, r"train.checkpoint_every: must be in \[1, inf\), got 0"),
        ("train.batch_size", 0, r"train.batch_size: must be in \[1, inf\), got 0"),
        (
            "train.batch_size",
            25,
            r"train.batch_size: must be in \[1, 24\] \(the images of data.splits.train\)",
        ),
        ("train.lr", -1, r"train.lr: must be in \(0, inf\), got -1"),
        ("train.lr", float("nan"), r"train.lr: must be a finite number, got nan"),
        ("deeplab.lr", float("inf"), r"deeplab.lr: must be a finite number, got inf"),
        ("train.momentum", 1.0, r"train.momentum: must be in \[0, 1\), got 1.0"),
        ("train.device", "gpu0", r"train.device: must be cpu, cuda or cuda:N, got 'gpu0'"),
        ("deeplab.device", "cuda:x", r"deeplab.device: must be cpu, cuda or cuda:N"),
        ("deeplab.scale_range", [0.5], r"deeplab.scale_range: needs \[min, max\]"),
        ("deeplab.scale_range", [1.2, 0.8], r"deeplab.scale_range: needs \[min, max\]"),
        ("deeplab.scale_range", [0.0, 1.0], r"deeplab.scale_range\[0\]: must be in \(0, inf\)"),
        ("deeplab.checkpoint_every", 0, r"deeplab.checkpoint_every: must be in \[1, inf\)"),
        ("deeplab.iterations", -5, r"deeplab.iterations: must be in \[1, inf\)"),
        ("pseudo_labels.scales", [1.0, -0.5], r"pseudo_labels.scales\[1\]: must be in \(0, inf\)"),
        ("pseudo_labels.bg_sweep", [0.1, 1.0], r"pseudo_labels.bg_sweep\[1\]: must be in \(0, 1\)"),
        ("pseudo_labels.bg_threshold", 0.0, r"pseudo_labels.bg_threshold: must be in \(0, 1\)"),
        (
            "train.loss_weights",
            {"image": -1.0, "cropped": 1.0, "privacy": 1.0, "attribute": 1.0},
            r"train.loss_weights.image: must be in \[0, inf\)",
        ),
        (
            "data.splits",
            {"train": 24, "val": 0, "test": 8},
            r"data.splits.val: must be in \[1, inf\)",
        ),
        ("synthpriv.safe_fraction", 1.5, r"synthpriv.safe_fraction: must be in \[0, 1\]"),
        ("masks.workers", 0, r"masks.workers: must be in \[1, inf\)"),
        (
            "masks.scheduler",
            "localhost:8786",
            r"masks.scheduler: must be null or a Dask scheduler address tcp://host:port",
        ),
        (
            "masks.scheduler",
            "tcp://head node:8786",
            r"masks.scheduler: must be null or a Dask scheduler address",
        ),
        ("masks.scheduler", 8786, r"masks.scheduler: expected str, got 8786"),
        ("seed", -1, r"seed: must be in \[0, inf\)"),
        (
            "train.pretrained",
            "/tmp/weights.pth",
            r"train.pretrained: must be a file in data/weights/",
        ),
    ],
)
def test_values_out_of_range_are_refused_naming_key_and_range(dotted, value, message):
    raw = resolve_profile("ci", REPO / "profiles")
    *sections, key = dotted.split(".")
    target = raw
    for section in sections:
        target = target[section]
    target[key] = value
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_edges_of_ranges_are_accepted():
    raw = resolve_profile("ci", REPO / "profiles")
    raw["train"].update(momentum=0.0, weight_decay=0.0, num_threads=0, batch_size=24)
    raw["deeplab"].update(device="cuda:1", scale_range=[1.0, 1.0])
    raw["synthpriv"]["safe_fraction"] = 1.0
    raw["masks"]["scheduler"] = "tcp://10.0.0.5:8786"
    cfg = parse_config(raw)
    assert cfg.deeplab.device == "cuda:1" and cfg.train.batch_size == 24
    assert cfg.masks.scheduler == "tcp://10.0.0.5:8786"
    raw["masks"]["scheduler"] = "tcp://[::1]:8786"
    assert parse_config(raw).masks.scheduler == "tcp://[::1]:8786"


@pytest.mark.parametrize(
    "section,launcher,message",
    [
        (
            "train",
            "srun python",
            r"train.launcher: must start with one of \['python', 'python3', 'torchrun'\]",
        ),
        (
            "train",
            "torchrun --standalone --nproc_per_node 3",
            r"train.batch_size: the global batch \(4\) must split evenly over the 3 processes train.launcher starts",
        ),
        (
            "deeplab",
            "torchrun --nnodes=2 --nproc-per-node=3 --rdzv-endpoint=h:29400",
            r"deeplab.batch_size: the global batch \(4\) must split evenly over the 6 processes",
        ),
    ],
)
def test_a_launcher_is_python_or_torchrun_and_its_ranks_split_the_global_batch(
    section, launcher, message
):
    raw = resolve_profile("ci", REPO / "profiles")
    raw[section]["launcher"] = launcher
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_launchers_whose_world_splits_the_batch_or_is_elastic_are_accepted():
    raw = resolve_profile("ci", REPO / "profiles")
    raw["train"]["launcher"] = "/opt/venv/bin/torchrun --standalone --nproc_per_node 2"
    raw["deeplab"]["launcher"] = (
        "torchrun --nnodes 1:4 --nproc_per_node 4 --rdzv-endpoint h:29400"  # elastic: unknown
    )
    cfg = parse_config(raw)
    assert (
        launcher_world_size(cfg.train.launcher) == 2
        and launcher_world_size(cfg.deeplab.launcher) is None
    )
    assert launcher_world_size("python") == 1
