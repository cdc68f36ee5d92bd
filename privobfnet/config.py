"""Typed configuration: params.yaml parsed once into frozen dataclasses.

An unknown key, a missing key or a value of the wrong type is a ``ConfigError`` that names the
key's full dotted path, so a typo in params.yaml never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

from privobfnet.io import json_digest


class ConfigError(ValueError):
    """params.yaml (or a profile) does not match the typed config."""


@dataclass(frozen=True)
class Range:
    """The values a number (or each number of a list) may take; ``None``: unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False

    def holds(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        left = "-inf" if self.low is None else f"{self.low:g}"
        right = "inf" if self.high is None else f"{self.high:g}"
        opening = "(" if self.low_open or self.low is None else "["
        closing = ")" if self.high_open or self.high is None else "]"
        return f"{opening}{left}, {right}{closing}"


def ranged(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    default: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field whose value (or every element, for lists) must lie in the range."""
    return dataclasses.field(
        default=default, metadata={"range": Range(low, high, low_open, high_open)}
    )


POSITIVE = dict(low=0, low_open=True)
BG_THRESHOLD = dict(
    low=0, high=1, low_open=True, high_open=True
)  # background score of the CAM maps
# what the tool hides by kind: every face box, text line or person pixel; pii: every line typed as
# a private text attribute (privobfnet.text), ordinary text left as it is
HIDE_ALL_KINDS = ("faces", "text", "people", "pii")
PROBABILITY = dict(low=0, high=1)
VPA_PROFILES = 30  # user profiles in VPA's user_studies/user_profiles.tsv
WEIGHTS_DIR = "data/weights"  # where the weights stage puts ImageNet weights
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")
SCHEDULER_PATTERN = re.compile(
    r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}"
)  # a Dask scheduler
LAUNCHERS = ("python", "python3", "torchrun")


def launcher_world_size(launcher: str) -> int | None:
    """The processes ``launcher`` starts when it says (torchrun's --nnodes x --nproc_per_node), else None."""
    words = launcher.split()
    if Path(words[0]).name != "torchrun":
        return 1
    options = {}
    for i, word in enumerate(words):
        name, _, value = word.partition("=")
        if name in ("--nnodes", "--nproc_per_node", "--nproc-per-node"):
            options[name.replace("-", "_")] = value or (words[i + 1] if i + 1 < len(words) else "")
    nnodes, nproc = options.get("__nnodes", "1"), options.get("__nproc_per_node", "1")
    return int(nnodes) * int(nproc) if nnodes.isdigit() and nproc.isdigit() else None


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["synthpriv", "vispr", "voc", "coco"]
    raw_dir: str  # where the download stage puts the data set (relative to the project root)
    manifest_dir: str  # where validate writes one parquet manifest per split
    # split name -> expected number of images (SynthPriv: how many to generate)
    splits: dict[str, int] = ranged(1)
    max_image_pixels: int = ranged(1)  # larger images are refused (decompression-bomb guard)
    allow_grayscale: (
        bool  # single-channel images (L, LA, I;16, I, F) are converted to RGB instead of refused
    )
    # VISPR-layout privacy score (privobfnet.data.privacy): "mean" over the user profiles or one
    # profile's column index (0-29: VPA's 30 profiles); rescale "unit" (x - 1) / 4 to [0, 1] or
    # "vpa" (x - 2.5) / 2.5
    privacy_profile: Union[Literal["mean"], int]
    privacy_rescale: Literal["unit", "vpa"]
    # COCO masks where instances overlap: the smallest on top, or the later annotation on top
    coco_overlap: Literal["largest_first", "file_order"]


@dataclass(frozen=True)
class ParserNoise:
    """Strength of the simulated human parser's errors (SynthPriv only)."""

    boundary_jitter_px: float = ranged(0)
    miss_limb_prob: float = ranged(**PROBABILITY)
    false_blob_prob: float = ranged(**PROBABILITY)
    miss_person_prob: float = ranged(**PROBABILITY)


@dataclass(frozen=True)
class FaceNoise:
    """Strength of the simulated face detector's errors (SynthPriv only): what a detector such as
    MediaPipe's does on photographs, missed small or half-hidden faces, spurious boxes, loose boxes."""

    miss_prob: float = ranged(**PROBABILITY)  # a visible face missed
    min_face_px: float = ranged(0)  # faces narrower than this are always missed
    min_visible: float = ranged(**PROBABILITY)  # faces with less of their area visible: missed
    false_box_prob: float = ranged(**PROBABILITY)  # per image, one spurious box
    jitter: float = ranged(0)  # each box side moved by up to this share of the box size


@dataclass(frozen=True)
class SynthPrivConfig:
    image_size: int = ranged(64)  # square images, pixels
    safe_fraction: float = ranged(
        **PROBABILITY
    )  # share of images with no private attribute (label a0_safe)
    max_people: int = ranged(0)
    max_text_items: int = ranged(0)
    max_objects: int = ranged(0)
    distractor_rate: float = ranged(0)  # mean number of non-private distractors per image
    n_user_profiles: int = ranged(1)  # simulated VISPR-style user-preference profiles
    parser_noise: ParserNoise
    # face widths as a share of the image width, drawn log-uniformly: [min, max] (portraits,
    # selfies and group photos: about 0.05 to 0.4)
    face_width: list[float] = ranged(**POSITIVE)
    face_noise: FaceNoise


@dataclass(frozen=True)
class DownloadConfig:
    timeout_s: float = ranged(**POSITIVE)
    retries: int = ranged(0)
    chunk_bytes: int = ranged(1)
    base_urls: dict[str, str]  # mirror overrides: file name -> URL (empty: the official URLs)


@dataclass(frozen=True)
class ValidateConfig:
    decode_images: bool  # open and fully decode every image (slow on COCO; sampling below)
    decode_sample: int = ranged(0)  # 0: decode all; N: decode a deterministic sample of N per split


@dataclass(frozen=True)
class MasksConfig:
    """Human / face / text masks precomputed for every image (paper section 3.2, Table 1)."""

    human_backend: Literal["simulated", "mediapipe"]
    text_backend: Literal["rapidocr", "paddleocr"]
    # simulated: SynthPriv's simulated face detector (synthpriv.face_noise), beside the parser
    face_backend: Literal["none", "mediapipe", "simulated"]
    text_margin_px: int = ranged(0)  # dilation of the union of detected text-line polygons
    text_det_limit_side: int = ranged(32)  # OCR detector resizes the longer side to at most this
    workers: int = ranged(1)  # worker processes (with scheduler null)
    # null: the local worker pool above; "tcp://host:port": a dask.distributed scheduler whose workers
    # compute the masks (README "The masks stage on Dask"); the stage still writes every output
    scheduler: Optional[str]
    failure_budget: int = ranged(0)  # images allowed to fail before the stage fails
    out_dir: str
    # L2G's class-agnostic saliency maps, placed by hand at <raw_dir>/<dataset>/Sal/<image name>.png
    # (privobfnet.data.saliency): the l2g crop target gates the classes without a prior mask by them
    saliency: bool = False
    # recognition of every detected text line (privobfnet.text.read) into <out_dir>/lines.parquet
    read_text: bool = True


@dataclass(frozen=True)
class TextConfig:
    """Stage `type_text`: the line typer learned from image labels, and every line typed."""

    # which sources type the lines: none | recognizers | learned | both (privobfnet.text.typer)
    typing: Literal["none", "recognizers", "learned", "both"]
    train_split: str  # the split whose image labels train the learned typer
    threshold_split: str  # the split whose image labels choose its threshold
    eval_split: str  # the split its line typing is evaluated on (SynthPriv's line ground truth)
    epochs: int = ranged(1)
    lr: float = ranged(**POSITIVE)
    l2: float = ranged(0)
    out_dir: str


@dataclass(frozen=True)
class TrainConfig:
    backbone: Literal["tiny", "resnet38", "resnet50", "resnet101", "lite0"]
    pretrained: Optional[str]  # path of ImageNet weights, None to train from scratch
    train_split: str  # split the ensemble trains on
    eval_split: str  # split its attribute and privacy-score metrics are reported on
    tiny_width: int = ranged(
        1
    )  # channels of the first stage of the small backbone (default profile)
    input_size: int = ranged(32)
    crop_size: int = ranged(16)
    n_crops: int = ranged(1)
    batch_size: int = ranged(1)
    lr: float = ranged(**POSITIVE)
    weight_decay: float = ranged(0)
    momentum: float = ranged(0, 1, high_open=True)
    epochs: int = ranged(1)
    lr_decay_epoch: int = ranged(0)
    lr_decay_factor: float = ranged(0, 1, low_open=True)
    loss_weights: dict[str, float] = ranged(0)  # image / cropped / privacy / attribute (eq. 1)
    # ablation switches (paper Table 4)
    use_cropped: bool
    use_privacy: bool
    use_attribute: bool
    use_mask_weighting: bool
    # which prior weighs each attribute's CAM (privobfnet.priors): coarse, its Table 1 type's mask
    # (the paper); refined, its own (face boxes, person mask, lines typed as it)
    priors: Literal["coarse", "refined"]
    crop_target: Literal["paper", "l2g"]  # how the cropped CAM becomes the image loss target
    l2g_bg_threshold: float = ranged(
        0, 1, high_open=True
    )  # background threshold of L2G's crop-target processing
    checkpoint_every: int = ranged(1)  # iterations between checkpoints
    num_threads: int = ranged(0)  # torch CPU threads (0: torch's default)
    device: str
    # how dvc.yaml starts the stage: `<launcher> -m stages.<stage>`; "python" (one process) or torchrun with
    # its options, e.g. "torchrun --standalone --nproc_per_node 4"; batch_size is the global batch (README)
    # (params.yaml must still name them; the defaults let checkpoints written before they existed load)
    launcher: str = "python"
    precision: Literal["fp32", "bf16"] = (
        "fp32"  # bf16: autocast of forward and loss (weights, grads, SGD stay fp32)
    )
    channels_last: bool = True  # models and their inputs in channels-last memory format
    cudnn_benchmark: bool = (
        False  # cuDNN picks kernels by timing: faster on GPU, not run-to-run identical
    )
    # ImageNet-pretrained lite0 only: the stem and this many first block stages keep their weights
    lite0_frozen_stages: int = ranged(0, 7, default=3)
    # where Model-Cropped's crops lie: "random" (the paper: N uniform random crops) or
    # "corners_random" (L2G: the 4 corners, then uniform random crops)
    crop_placement: Literal["random", "corners_random"] = "random"
    # SGD's parameter groups: "new_layers_10x" (backbone 1x, every new layer 10x, weight decay on all)
    # or "l2g" (L2G's: Nesterov, backbone weights 1x, biases 2x, new weights 10x, new biases 20x,
    # weight decay on every group as its SGD's default; docs/protocol.md)
    optimizer: Literal["new_layers_10x", "l2g"] = "new_layers_10x"
    # the training images: "squash_flip" (resized to input_size x input_size, random h-flip) or "l2g"
    # (L2G: short side to input_size * 8 / 7, i.e. 512 for 448, bicubic; a random input_size crop,
    # aspect kept; ColorJitter(0.3, 0.3, 0.3, 0.1); no flip)
    augment: Literal["squash_flip", "l2g"] = "squash_flip"


@dataclass(frozen=True)
class PseudoLabelConfig:
    scales: list[float] = ranged(
        **POSITIVE
    )  # multi-scale CAM inference, each with a horizontal flip
    bg_threshold: float = ranged(
        **BG_THRESHOLD
    )  # background score for the argmax (chosen from the sweep)
    bg_sweep: list[float] = ranged(
        0, 1, low_open=True, high_open=True
    )  # thresholds whose CAM mIoU is reported
    eval_splits: list[str]  # splits whose CAM mIoU against ground truth is reported
    crf: bool  # refine the written pseudo-labels with a dense CRF (the `crf` extra)
    crf_iterations: int = ranged(1)
    out_dir: str


@dataclass(frozen=True)
class DeeplabConfig:
    # resnet101_msra: DeepLab's MSRA (Caffe) ResNet-101, initialised from deeplab-pytorch's
    # COCO-trained deeplabv1_resnet101-coco.pth as deeplab-pytorch starts VOC (docs/protocol.md)
    backbone: Literal["tiny", "resnet101", "resnet101_msra", "lite0"]
    pretrained: Optional[str]
    labels: Literal["pseudo", "ground_truth"]  # ground_truth gives the fully supervised ceiling
    train_split: str
    eval_split: str
    tiny_width: int = ranged(1)
    scale_range: list[float] = ranged(**POSITIVE)  # random rescale range (min, max)
    checkpoint_every: int = ranged(1)
    crop_size: int = ranged(16)
    batch_size: int = ranged(1)
    iterations: int = ranged(1)
    lr: float = ranged(**POSITIVE)
    momentum: float = ranged(0, 1, high_open=True)
    weight_decay: float = ranged(0)
    poly_power: float = ranged(0)
    num_threads: int = ranged(0)
    device: str
    # how dvc.yaml starts the stage: `<launcher> -m stages.<stage>`; "python" (one process) or torchrun with
    # its options, e.g. "torchrun --standalone --nproc_per_node 4"; batch_size is the global batch (README)
    # (params.yaml must still name them; the defaults let checkpoints written before they existed load)
    launcher: str = "python"
    precision: Literal["fp32", "bf16"] = (
        "fp32"  # bf16: autocast of forward and loss (weights, grads, SGD stay fp32)
    )
    channels_last: bool = True  # models and their inputs in channels-last memory format
    cudnn_benchmark: bool = (
        False  # cuDNN picks kernels by timing: faster on GPU, not run-to-run identical
    )
    lite0_frozen_stages: int = ranged(0, 7, default=3)  # as train.lite0_frozen_stages
    # the rescale factors drawn from (deeplab-pytorch: 0.5, 0.75, 1, 1.25, 1.5); empty: uniform(scale_range)
    scale_choices: list[float] = ranged(**POSITIVE, default=())
    # SGD's groups: "aspp_10x" (backbone 1x, ASPP 10x, weight decay on all) or "deeplab_pytorch"
    # (backbone 1x, ASPP weights 10x, ASPP biases 20x without weight decay)
    optimizer: Literal["aspp_10x", "deeplab_pytorch"] = "aspp_10x"
    # multi-scale inputs (deeplab-pytorch's MSC: the image and these rescaled copies, fused by a
    # pixel-wise max; in training a loss on every output); empty: single scale
    msc_scales: list[float] = ranged(0, 1, low_open=True, high_open=True, default=())
    crf: bool = False  # test-time dense CRF with deeplab-pytorch's parameters (the `crf` extra)


@dataclass(frozen=True, kw_only=True)
class Preferences:
    """What to hide and how: the obfuscation tool's settings (the CLI's flags and ``--prefs`` file) and
    the ``redact`` stage's (params ``redact.*``), parsed by the same code. The defaults are the
    default profile's ``redact`` params, the settings the redact stage measures (a test checks it);
    ``hide`` has none: which attributes to hide is the user's choice."""

    hide: tuple[str, ...] = ()  # attribute ids of the model (its masks)
    hide_all: tuple[
        Literal["faces", "text", "people", "pii"], ...
    ] = ()  # model-free: every detection
    style: Literal["solid", "pixelate", "blur"] = "solid"
    color: tuple[int, int, int] = ranged(0, 255, default=(0, 0, 0))  # solid fill
    block_px: int = ranged(0, default=0)  # pixelate: at least this (and 1/6 of a region's side)
    class_threshold: float = ranged(0, 1, default=0.5)  # attribute probability that counts as found
    bg_threshold: float = ranged(**BG_THRESHOLD, default=0.35)  # map value below it: background
    min_overlap: float = ranged(
        0, 1, default=0.1
    )  # share of a text line / face box the mask covers
    dilate_px: int = ranged(0, default=4)  # growth of un-masked attributes' masks (and fallbacks)
    margin_px: int = ranged(0, default=2)  # growth of every hidden region
    # text attributes: which sources type the read lines (none: the model's attention snapped to
    # lines, as for the other attributes); a line is hidden when a chosen attribute scores at least
    # type_threshold (below the 0.5 decision: a line uncertain between attributes is hidden)
    text_typing: Literal["none", "recognizers", "learned", "both"] = "both"
    type_threshold: float = ranged(0, 1, low_open=True, default=0.3)
    allow: tuple[str, ...] = ()  # strings never hidden by typing (compared case- and space-blind)


@dataclass(frozen=True, kw_only=True)
class RedactConfig(Preferences):
    """Stage `redact`: obfuscate a split with these preferences and measure what leaks."""

    split: str
    max_images: int = ranged(0)  # 0: every image of the split
    baseline_hide_all: tuple[
        Literal["faces", "text", "people", "pii"], ...
    ]  # the model-free baseline
    ocr_side: int = ranged(32)  # OCR recognition input (longer side) for the leak test
    n_examples: int = ranged(0)  # images in reports/figures/redact_examples.png

    def preferences(self) -> Preferences:
        """The stage's default preferences, as a user would give them to the tool."""
        return Preferences(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(Preferences)}
        )


@dataclass(frozen=True)
class TrackingConfig:
    uri: Optional[str]  # None: sqlite:///<project root>/mlflow.db
    experiment: str


@dataclass(frozen=True)
class Config:
    profile: str
    seed: int = ranged(0)
    data: DataConfig
    synthpriv: SynthPrivConfig
    download: DownloadConfig
    validate: ValidateConfig
    masks: MasksConfig
    text: TextConfig
    train: TrainConfig
    pseudo_labels: PseudoLabelConfig
    deeplab: DeeplabConfig
    redact: RedactConfig
    tracking: TrackingConfig

    def section_dict(self, *keys: str) -> dict[str, Any]:
        """The named params as plain nested dicts (for logging and hashing): a key is a section
        (``train``), a dotted key (``data.dataset``) or a top-level value (``seed``)."""
        full = dataclasses.asdict(self)
        out: dict[str, Any] = {}
        for key in keys:
            *sections, name = key.split(".")
            source, target = full, out
            for section in sections:
                source, target = source[section], target.setdefault(section, {})
            if name not in source:
                raise KeyError(f"params have no key {key!r}")
            target[name] = source[name]
        return out

    def params_hash(self, *keys: str) -> str:
        """Stable short hash of the named params (``section_dict``; all of them when none are named)."""
        payload = self.section_dict(*keys) if keys else dataclasses.asdict(self)
        return json_digest(payload, 12)


# --------------------------------------------------------------------------------------------
# Strict parsing
# --------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for arg in non_none:
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {args}"
        )
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = args
        return {
            _coerce(k, key_tp, f"{key}.{k}"): _coerce(v, val_tp, f"{key}.{k}")
            for k, v in value.items()
        }
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        fixed = origin is tuple and Ellipsis not in args  # tuple[int, int, int]: exactly three
        if fixed and len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return origin(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # a bug in this module, not in params


def _build(cls: type, raw: Any, prefix: str, base: Any = None) -> Any:
    """``cls`` from the mapping ``raw``, every key checked; with ``base`` (an instance), keys that
    ``raw`` leaves out keep ``base``'s values."""
    where = prefix or "params"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        dotted = ", ".join(f"{prefix}.{k}" if prefix else k for k in unknown)
        raise ConfigError(f"unknown key(s): {dotted} (known: {', '.join(names)})")
    missing = [n for n in names if n not in raw and base is None]
    if missing:
        dotted = ", ".join(f"{prefix}.{k}" if prefix else k for k in missing)
        raise ConfigError(f"missing key(s): {dotted}")
    kwargs = {
        n: _coerce(raw[n], hints[n], f"{prefix}.{n}" if prefix else n)
        if n in raw
        else getattr(base, n)
        for n in names
    }
    for f in dataclasses.fields(cls):
        if "range" in f.metadata and f.name in raw:
            _check_range(
                kwargs[f.name], f.metadata["range"], f"{prefix}.{f.name}" if prefix else f.name
            )
    return cls(**kwargs)


def _check_range(value: Any, allowed: Range, key: str) -> None:
    """A number, or each number of a list or mapping, must lie in ``allowed``; the error names the key."""
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, (list, tuple))
        else [(None, value)]
    )
    for index, number in items:
        if not allowed.holds(number):
            where = (
                key
                if index is None
                else f"{key}.{index}"
                if isinstance(value, dict)
                else f"{key}[{index}]"
            )
            raise ConfigError(f"{where}: must be in {allowed}, got {number!r}")


def _check(cfg: Config) -> None:
    """Cross-field rules that types and ranges alone cannot express (every check of the params is here)."""
    for section in ("train", "deeplab"):
        launcher, batch_size = getattr(cfg, section).launcher, getattr(cfg, section).batch_size
        if not launcher.split() or Path(launcher.split()[0]).name not in LAUNCHERS:
            raise ConfigError(
                f"{section}.launcher: must start with one of {list(LAUNCHERS)}, got {launcher!r}"
            )
        world_size = launcher_world_size(launcher)
        if world_size is not None and batch_size % world_size:
            raise ConfigError(
                f"{section}.batch_size: the global batch ({batch_size}) must split evenly over the "
                f"{world_size} processes {section}.launcher starts"
            )
        device = getattr(cfg, section).device
        if not DEVICE_PATTERN.fullmatch(device):
            raise ConfigError(f"{section}.device: must be cpu, cuda or cuda:N, got {device!r}")
        pretrained = getattr(cfg, section).pretrained
        if pretrained is not None and Path(pretrained).parent != Path(WEIGHTS_DIR):
            raise ConfigError(
                f"{section}.pretrained: must be a file in {WEIGHTS_DIR}/ (the weights stage puts it "
                f"there), got {pretrained!r}"
            )
    profile = cfg.data.privacy_profile
    n_profiles = cfg.synthpriv.n_user_profiles if cfg.data.dataset == "synthpriv" else VPA_PROFILES
    if profile != "mean" and not 0 <= profile < n_profiles:
        raise ConfigError(
            f"data.privacy_profile: must be 'mean' or in [0, {n_profiles - 1}], got {profile!r}"
        )
    if cfg.masks.saliency and cfg.train.crop_target != "l2g":
        raise ConfigError(
            "masks.saliency: the saliency maps gate L2G's crop target only; set "
            f"train.crop_target: l2g or masks.saliency: false (got {cfg.train.crop_target!r})"
        )
    if cfg.data.privacy_rescale == "vpa" and cfg.train.use_privacy:
        raise ConfigError(
            "data.privacy_rescale: 'vpa' maps the 1-5 ratings to [-0.6, 1], which the privacy head "
            "(a sigmoid, [0, 1]) cannot fit; use 'unit' ((x - 1) / 4) or turn train.use_privacy off"
        )
    face_width = cfg.synthpriv.face_width
    if len(face_width) != 2 or face_width[0] > face_width[1] or face_width[1] > 1:
        raise ConfigError(
            f"synthpriv.face_width: needs [min, max] with 0 < min <= max <= 1, got {face_width}"
        )
    for kind, backend in (("human", cfg.masks.human_backend), ("face", cfg.masks.face_backend)):
        if backend == "simulated" and cfg.data.dataset != "synthpriv":
            raise ConfigError(
                f"masks.{kind}_backend: 'simulated' reads SynthPriv's simulated outputs; "
                f"data.dataset {cfg.data.dataset!r} needs mediapipe"
            )
    deeplab = cfg.deeplab
    if len(deeplab.scale_range) != 2 or deeplab.scale_range[0] > deeplab.scale_range[1]:
        raise ConfigError(
            f"deeplab.scale_range: needs [min, max] with 0 < min <= max, got {deeplab.scale_range}"
        )
    scheduler = cfg.masks.scheduler
    if scheduler is not None and not SCHEDULER_PATTERN.fullmatch(scheduler):
        raise ConfigError(
            f"masks.scheduler: must be null or a Dask scheduler address tcp://host:port, got {scheduler!r}"
        )
    if not cfg.data.splits:
        raise ConfigError("data.splits: at least one split is needed")
    train = cfg.train
    if train.crop_size > train.input_size:
        raise ConfigError(
            f"train.crop_size ({train.crop_size}) exceeds train.input_size ({train.input_size})"
        )
    if set(train.loss_weights) != {"image", "cropped", "privacy", "attribute"}:
        raise ConfigError("train.loss_weights: needs exactly image, cropped, privacy, attribute")
    for key in ("train_split", "eval_split"):
        if getattr(train, key) not in cfg.data.splits:
            raise ConfigError(f"train.{key}: {getattr(train, key)!r} is not in data.splits")
    if train.batch_size > cfg.data.splits[train.train_split]:
        raise ConfigError(
            f"train.batch_size: must be in [1, {cfg.data.splits[train.train_split]}] (the images of "
            f"data.splits.{train.train_split}), got {train.batch_size}"
        )

    if cfg.deeplab.labels == "pseudo" and cfg.deeplab.train_split not in cfg.data.splits:
        raise ConfigError(f"deeplab.train_split: {cfg.deeplab.train_split!r} is not in data.splits")
    if cfg.redact.split not in cfg.data.splits:
        raise ConfigError(f"redact.split: {cfg.redact.split!r} is not in data.splits")
    if not cfg.masks.read_text and (cfg.text.typing != "none" or cfg.redact.text_typing != "none"):
        raise ConfigError(
            "masks.read_text: typing text lines (text.typing, redact.text_typing) needs what they "
            "read; turn it on or set both typings to none"
        )
    for key in ("train_split", "threshold_split", "eval_split"):
        if getattr(cfg.text, key) not in cfg.data.splits:
            raise ConfigError(f"text.{key}: {getattr(cfg.text, key)!r} is not in data.splits")


def parse_config(raw: dict[str, Any]) -> Config:
    """Parse a params mapping (params.yaml's content) into a ``Config``; raises ``ConfigError``."""
    cfg = _build(Config, raw, "")
    _check(cfg)
    return cfg


def parse_preferences(
    raw: Any, *, source: str = "preferences", base: Preferences | None = None
) -> Preferences:
    """``Preferences`` from a mapping (a ``--prefs`` YAML file's content, or the CLI's flags) over
    ``base`` (default: the defaults), by the rules params.yaml's ``redact`` keys follow; a
    ``ConfigError`` names ``source`` and the key. ``hide`` / ``hide_all`` may be comma-separated."""
    if raw is None:
        return base or Preferences()
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(raw).__name__}")
    raw = {
        key: [v.strip() for v in value.split(",") if v.strip()]
        if key in ("hide", "hide_all", "allow") and isinstance(value, str)
        else value
        for key, value in raw.items()
    }
    try:
        return _build(Preferences, raw, "", base=base or Preferences())
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def merge(base: dict[str, Any], override: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Deep-merge a profile's overrides into base; an override key absent from base is an error."""
    out = dict(base)
    for key, value in override.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in base:
            raise ConfigError(f"profile override names unknown key: {dotted}")
        if isinstance(value, dict) and isinstance(base[key], dict) and not _is_free_mapping(dotted):
            out[key] = merge(base[key], value, dotted)
        else:
            out[key] = value
    return out


# mappings whose keys are data, not schema: an override replaces them whole
_FREE_MAPPINGS = {"data.splits", "download.base_urls", "train.loss_weights"}


def _is_free_mapping(dotted: str) -> bool:
    return dotted in _FREE_MAPPINGS


__all__ = [
    "Config",
    "ConfigError",
    "MasksConfig",
    "Preferences",
    "parse_preferences",
    "PseudoLabelConfig",
    "RedactConfig",
    "DataConfig",
    "DeeplabConfig",
    "DownloadConfig",
    "ParserNoise",
    "SynthPrivConfig",
    "TrackingConfig",
    "TrainConfig",
    "ValidateConfig",
    "merge",
    "parse_config",
]
