"""Typed configuration: params.yaml parsed once into frozen dataclasses.

An unknown key, a missing key or a value of the wrong type is a ``ConfigError`` that names the
key's full dotted path, so a typo in params.yaml never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Optional


class ConfigError(ValueError):
    """params.yaml (or a profile) does not match the typed config."""


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["synthpriv", "vispr", "voc", "coco"]
    raw_dir: str  # where the download stage puts the data set (relative to the project root)
    manifest_dir: str  # where validate writes one parquet manifest per split
    # split name -> expected number of images (SynthPriv: how many to generate)
    splits: dict[str, int]
    max_image_pixels: int  # larger images are refused (decompression-bomb guard)
    allow_grayscale: bool  # 8-bit grayscale images are converted to RGB instead of refused


@dataclass(frozen=True)
class ParserNoise:
    """Strength of the simulated human parser's errors (SynthPriv only)."""

    boundary_jitter_px: float
    miss_limb_prob: float
    false_blob_prob: float
    miss_person_prob: float


@dataclass(frozen=True)
class SynthPrivConfig:
    image_size: int  # square images, pixels
    safe_fraction: float  # share of images with no private attribute (label a0_safe)
    max_people: int
    max_text_items: int
    max_objects: int
    distractor_rate: float  # mean number of non-private distractors per image
    n_user_profiles: int  # simulated VISPR-style user-preference profiles
    parser_noise: ParserNoise


@dataclass(frozen=True)
class DownloadConfig:
    timeout_s: float
    retries: int
    chunk_bytes: int
    base_urls: dict[str, str]  # mirror overrides: file name -> URL (empty: the official URLs)


@dataclass(frozen=True)
class ValidateConfig:
    decode_images: bool  # open and fully decode every image (slow on COCO; sampling below)
    decode_sample: int  # 0: decode all; N: decode a deterministic sample of N per split


@dataclass(frozen=True)
class MasksConfig:
    """Human / face / text masks precomputed for every image (paper section 3.2, Table 1)."""

    human_backend: Literal["simulated", "mediapipe"]
    text_backend: Literal["rapidocr", "paddleocr"]
    face_backend: Literal["none", "mediapipe"]
    text_margin_px: int  # dilation of the union of detected text-line polygons
    text_det_limit_side: int  # OCR detector resizes the longer side to at most this
    workers: int  # worker processes
    failure_budget: int  # images allowed to fail before the stage fails
    out_dir: str


@dataclass(frozen=True)
class TrainConfig:
    backbone: Literal["tiny", "resnet38", "resnet50", "resnet101"]
    pretrained: Optional[str]  # path of ImageNet weights, None to train from scratch
    train_split: str  # split the ensemble trains on
    eval_split: str  # split its attribute and privacy-score metrics are reported on
    tiny_width: int  # channels of the first stage of the small backbone (default profile)
    input_size: int
    crop_size: int
    n_crops: int
    batch_size: int
    lr: float
    weight_decay: float
    momentum: float
    epochs: int
    lr_decay_epoch: int
    lr_decay_factor: float
    loss_weights: dict[str, float]  # image / cropped / privacy / attribute (eq. 1)
    # ablation switches (paper Table 4)
    use_cropped: bool
    use_privacy: bool
    use_attribute: bool
    use_mask_weighting: bool
    crop_target: Literal["paper", "l2g"]  # how the cropped CAM becomes the image loss target
    l2g_bg_threshold: float  # background threshold of L2G's crop-target processing
    checkpoint_every: int  # iterations between checkpoints
    num_threads: int  # torch CPU threads (0: torch's default)
    device: str


@dataclass(frozen=True)
class PseudoLabelConfig:
    scales: list[float]  # multi-scale CAM inference, each with a horizontal flip
    bg_threshold: float  # background score for the argmax (chosen from the sweep)
    bg_sweep: list[float]  # thresholds whose CAM mIoU is reported
    eval_splits: list[str]  # splits whose CAM mIoU against ground truth is reported
    crf: bool  # refine the written pseudo-labels with a dense CRF (the `crf` extra)
    crf_iterations: int
    out_dir: str


@dataclass(frozen=True)
class DeeplabConfig:
    backbone: Literal["tiny", "resnet101"]
    pretrained: Optional[str]
    labels: Literal["pseudo", "ground_truth"]  # ground_truth gives the fully supervised ceiling
    train_split: str
    eval_split: str
    tiny_width: int
    scale_range: list[float]  # random rescale range (min, max)
    checkpoint_every: int
    crop_size: int
    batch_size: int
    iterations: int
    lr: float
    momentum: float
    weight_decay: float
    poly_power: float
    num_threads: int
    device: str


@dataclass(frozen=True)
class RedactConfig:
    """Stage `redact`: obfuscate a split with default user preferences and measure what leaks."""

    split: str
    max_images: int  # 0: every image of the split
    hide: list[str]  # attribute ids the default preferences hide
    baseline_hide_all: list[Literal["faces", "text", "people"]]  # the model-free baseline
    style: Literal["solid", "pixelate", "blur"]
    class_threshold: float
    bg_threshold: float
    min_overlap: float  # share of a text line / face box the attribute's mask must cover
    dilate_px: int
    margin_px: int
    ocr_side: int  # OCR recognition input (longer side) for the leak test
    n_examples: int  # images in reports/figures/redact_examples.png


@dataclass(frozen=True)
class TrackingConfig:
    uri: Optional[str]  # None: sqlite:///<project root>/mlflow.db
    experiment: str


@dataclass(frozen=True)
class Config:
    profile: str
    seed: int
    data: DataConfig
    synthpriv: SynthPrivConfig
    download: DownloadConfig
    validate: ValidateConfig
    masks: MasksConfig
    train: TrainConfig
    pseudo_labels: PseudoLabelConfig
    deeplab: DeeplabConfig
    redact: RedactConfig
    tracking: TrackingConfig

    def section_dict(self, *names: str) -> dict[str, Any]:
        """The named sections as plain nested dicts (for logging and hashing)."""
        full = dataclasses.asdict(self)
        return {name: full[name] for name in names}

    def params_hash(self, *names: str) -> str:
        """Stable short hash of the named sections (all sections when none are named)."""
        payload = self.section_dict(*names) if names else dataclasses.asdict(self)
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


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
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {args}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = args
        return {_coerce(k, key_tp, f"{key}.{k}"): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return origin(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
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


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix or "params"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        dotted = ", ".join(f"{prefix}.{k}" if prefix else k for k in unknown)
        raise ConfigError(f"unknown key(s): {dotted}")
    missing = [n for n in names if n not in raw]
    if missing:
        dotted = ", ".join(f"{prefix}.{k}" if prefix else k for k in missing)
        raise ConfigError(f"missing key(s): {dotted}")
    kwargs = {n: _coerce(raw[n], hints[n], f"{prefix}.{n}" if prefix else n) for n in names}
    return cls(**kwargs)


def _check(cfg: Config) -> None:
    """Cross-field rules that types alone cannot express."""
    if not cfg.data.splits:
        raise ConfigError("data.splits: at least one split is needed")
    for split, n in cfg.data.splits.items():
        if n < 1:
            raise ConfigError(f"data.splits.{split}: must be >= 1, got {n}")
    t = cfg.train
    if t.crop_size > t.input_size:
        raise ConfigError(f"train.crop_size ({t.crop_size}) exceeds train.input_size ({t.input_size})")
    if set(t.loss_weights) != {"image", "cropped", "privacy", "attribute"}:
        raise ConfigError("train.loss_weights: needs exactly image, cropped, privacy, attribute")
    for key in ("train_split", "eval_split"):
        if getattr(t, key) not in cfg.data.splits:
            raise ConfigError(f"train.{key}: {getattr(t, key)!r} is not in data.splits")
    if cfg.deeplab.labels == "pseudo" and cfg.deeplab.train_split not in cfg.data.splits:
        raise ConfigError(f"deeplab.train_split: {cfg.deeplab.train_split!r} is not in data.splits")
    if not 0.0 < cfg.pseudo_labels.bg_threshold < 1.0:
        raise ConfigError(f"pseudo_labels.bg_threshold: must be in (0, 1), got {cfg.pseudo_labels.bg_threshold}")
    if cfg.redact.split not in cfg.data.splits:
        raise ConfigError(f"redact.split: {cfg.redact.split!r} is not in data.splits")
    sp = cfg.synthpriv
    if not 0.0 <= sp.safe_fraction <= 1.0:
        raise ConfigError(f"synthpriv.safe_fraction: must be in [0, 1], got {sp.safe_fraction}")
    if sp.image_size < 64:
        raise ConfigError(f"synthpriv.image_size: must be >= 64, got {sp.image_size}")


def parse_config(raw: dict[str, Any]) -> Config:
    """Parse a params mapping (params.yaml's content) into a ``Config``; raises ``ConfigError``."""
    cfg = _build(Config, raw, "")
    _check(cfg)
    return cfg


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
