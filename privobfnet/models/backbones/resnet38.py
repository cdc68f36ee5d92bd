"""ResNet-38 as the WSSS literature uses it (Wu et al.'s "wider or deeper" model A1, via PSA and L2G).

Pre-activation wide residual blocks; strides 2 in b2, b3, b4 give output stride 8; b5 (dilation 2)
and the two bottleneck blocks b6, b7 (dilation 4) keep it there; 4096 output channels. Module and
parameter names follow the converted ImageNet weights (``resnet38_dict.pth``: ``conv1a.weight``,
``b4_3.conv_branch2a.weight``, ``b6.bn_branch2b2.running_var``, ``bn7.bias``, ...), which are also
read straight from the original MXNet file ``ilsvrc-cls_rna-a1_cls1000_ep-0001.params`` by
``read_mxnet_params`` + ``mxnet_to_torch_names`` (numpy only, no mxnet).
"""

from __future__ import annotations

import os
import re
import struct
from typing import BinaryIO, Mapping

import numpy as np
import torch
from torch import nn

from privobfnet.models.inputs import IMAGENET_NORM
from privobfnet.models.layers import keep_batchnorm_frozen


class WideBlock(nn.Module):
    """Pre-activation block of two 3x3 convs (PSA's ``ResBlock``); 1x1 projection when shape changes."""

    def __init__(
        self,
        in_ch: int,
        mid_ch: int,
        out_ch: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
    ):
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        self.same_shape = in_ch == out_ch and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(in_ch)
        self.conv_branch2a = nn.Conv2d(
            in_ch, mid_ch, 3, stride, first_dilation, first_dilation, bias=False
        )
        self.bn_branch2b1 = nn.BatchNorm2d(mid_ch)
        self.conv_branch2b1 = nn.Conv2d(mid_ch, out_ch, 3, 1, dilation, dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)

    def forward(
        self, x: torch.Tensor
    ) -> torch.Tensor:  # (B, in, h, w) -> (B, out, h/stride, w/stride)
        pre = torch.relu(self.bn_branch2a(x))
        shortcut = (
            x if self.same_shape else self.conv_branch1(pre)
        )  # projection sees the activated input
        out = self.conv_branch2b1(torch.relu(self.bn_branch2b1(self.conv_branch2a(pre))))
        return shortcut + out


class BottleneckBlock(nn.Module):
    """Pre-activation bottleneck 1x1 -> 3x3 (dilated) -> 1x1 with dropout (PSA's ``ResBlock_bot``)."""

    def __init__(self, in_ch: int, out_ch: int, *, dilation: int, dropout: float):
        super().__init__()
        self.bn_branch2a = nn.BatchNorm2d(in_ch)
        self.conv_branch2a = nn.Conv2d(in_ch, out_ch // 4, 1, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(out_ch // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(
            out_ch // 4, out_ch // 2, 3, 1, dilation, dilation, bias=False
        )
        self.bn_branch2b2 = nn.BatchNorm2d(out_ch // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(out_ch // 2, out_ch, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in, h, w) -> (B, out, h, w)
        pre = torch.relu(self.bn_branch2a(x))
        out = self.conv_branch2b1(
            self.dropout_2b1(torch.relu(self.bn_branch2b1(self.conv_branch2a(pre))))
        )
        out = self.conv_branch2b2(self.dropout_2b2(torch.relu(self.bn_branch2b2(out))))
        return self.conv_branch1(pre) + out


# (name, in, mid, out, stride, dilation, first_dilation) of the wide blocks, in forward order
_WIDE_LAYOUT = (
    [("b2", 64, 128, 128, 2, 1, None)]
    + [(f"b2_{i}", 128, 128, 128, 1, 1, None) for i in (1, 2)]
    + [("b3", 128, 256, 256, 2, 1, None)]
    + [(f"b3_{i}", 256, 256, 256, 1, 1, None) for i in (1, 2)]
    + [("b4", 256, 512, 512, 2, 1, None)]
    + [(f"b4_{i}", 512, 512, 512, 1, 1, None) for i in range(1, 6)]
    + [("b5", 512, 512, 1024, 1, 2, 1)]
    + [(f"b5_{i}", 1024, 512, 1024, 1, 2, None) for i in (1, 2)]
)


class ResNet38(nn.Module):
    """ResNet-38 trunk: (B, 3, H, W) -> (B, 4096 / width_divisor, ceil(H/8), ceil(W/8)).

    ``width_divisor`` > 1 shrinks every layer (same names and layout; for tests only).
    ``frozen_prefixes``: modules kept fixed after loading ImageNet weights (L2G freezes conv1a and
    b2*); with ``freeze_bn`` every BatchNorm stays in eval mode with fixed affine parameters, as
    PSA and L2G train with batch 4.
    """

    output_stride = 8
    input_norm = IMAGENET_NORM

    def __init__(
        self,
        *,
        width_divisor: int = 1,
        freeze_bn: bool = False,
        frozen_prefixes: tuple[str, ...] = (),
    ):
        super().__init__()
        d = width_divisor
        self.out_channels = 4096 // d
        self.freeze_bn = freeze_bn
        self.conv1a = nn.Conv2d(3, 64 // d, 3, padding=1, bias=False)
        for name, cin, mid, cout, stride, dilation, first in _WIDE_LAYOUT:
            self.add_module(
                name,
                WideBlock(
                    cin // d,
                    mid // d,
                    cout // d,
                    stride=stride,
                    dilation=dilation,
                    first_dilation=first,
                ),
            )
        self.b6 = BottleneckBlock(1024 // d, 2048 // d, dilation=4, dropout=0.3)
        self.b7 = BottleneckBlock(2048 // d, 4096 // d, dilation=4, dropout=0.5)
        self.bn7 = nn.BatchNorm2d(4096 // d)
        self._blocks = [name for name, *_ in _WIDE_LAYOUT] + ["b6", "b7"]
        for name, param in self.named_parameters():
            if name.startswith(frozen_prefixes) or (freeze_bn and ".bn" in f".{name}"):
                param.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 4096, ceil(H/8), ceil(W/8))."""
        x = self.conv1a(images)
        for name in self._blocks:
            x = getattr(self, name)(x)
        return torch.relu(self.bn7(x))

    def train(self, mode: bool = True) -> "ResNet38":
        """Switch mode; BatchNorm stays in eval mode when ``freeze_bn``."""
        super().train(mode)
        if self.freeze_bn:
            keep_batchnorm_frozen(self)
        return self


# --------------------------------------------------------------------------------------------
# ImageNet weights: the converted state dict, or the original MXNet file
# --------------------------------------------------------------------------------------------
_MX_BN = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_var": "running_var",
    "mean": "running_mean",
    "var": "running_var",
}
_MX_BRANCH = re.compile(
    r"^(res|bn)(\d)(a|b\d+)_(branch\w+?)_(weight|gamma|beta|moving_mean|moving_var|mean|var)$"
)


def mxnet_to_torch_names(params: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rename MXNet ResNet-38 arrays (``arg:res4b3_branch2a_weight``) to this module's state-dict keys.

    The ImageNet classifier (``linear1000*``) is dropped; an unrecognised name is an error.
    """
    out: dict[str, torch.Tensor] = {}
    for raw_name, array in params.items():
        name = raw_name.split(":", 1)[-1]  # drop arg:/aux:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if name.startswith("linear1000"):
            continue
        if name == "conv1a_weight":
            out["conv1a.weight"] = tensor
            continue
        if name.startswith("bn7_") and name[4:] in _MX_BN:
            out[f"bn7.{_MX_BN[name[4:]]}"] = tensor
            continue
        match = _MX_BRANCH.match(name)
        if not match:
            raise ValueError(f"unrecognised ResNet-38 MXNet parameter: {raw_name}")
        kind, stage, block, branch, field = match.groups()
        module = f"b{stage}" if block == "a" else f"b{stage}_{block[1:]}"
        if kind == "res":
            out[f"{module}.conv_{branch}.weight"] = tensor
        else:
            out[f"{module}.bn_{branch}.{_MX_BN[field]}"] = tensor
    return out


_MX_LIST_MAGIC = 0x112
_MX_V1, _MX_V2, _MX_V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
_MX_DTYPES = {
    0: np.float32,
    1: np.float64,
    2: np.float16,
    3: np.uint8,
    4: np.int32,
    5: np.int8,
    6: np.int64,
}


def _read(stream: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = stream.read(size)
    if len(data) != size:
        raise ValueError("MXNet params file is truncated")
    return struct.unpack(fmt, data)


def _read_ndarray(stream: BinaryIO) -> np.ndarray:
    (magic,) = _read(stream, "<I")
    if magic in (_MX_V2, _MX_V3):
        (storage,) = _read(stream, "<i")
        if storage != 0:
            raise ValueError("MXNet params file holds a sparse array (not supported)")
    if magic in (_MX_V1, _MX_V2, _MX_V3):
        (ndim,) = _read(stream, "<i")
        shape = _read(stream, f"<{ndim}q") if ndim > 0 else ()
    else:  # legacy: the first word already is ndim, dims are uint32
        ndim = magic
        shape = _read(stream, f"<{ndim}I")
    if ndim <= 0:
        return np.zeros((0,), np.float32)
    _read(stream, "<ii")  # context (device type, id)
    (type_flag,) = _read(stream, "<i")
    dtype = np.dtype(_MX_DTYPES[type_flag]).newbyteorder("<")
    count = int(np.prod(shape))
    data = stream.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise ValueError("MXNet params file is truncated")
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_mxnet_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an MXNet ``.params`` file (NDArray list, dense arrays) into {name: array} with numpy."""
    with open(path, "rb") as stream:
        header, _reserved = _read(stream, "<QQ")
        if header != _MX_LIST_MAGIC:
            raise ValueError(f"{path}: not an MXNet NDArray list file (magic {header:#x})")
        (count,) = _read(stream, "<Q")
        arrays = [_read_ndarray(stream) for _ in range(count)]
        (n_names,) = _read(stream, "<Q")
        names = []
        for _ in range(n_names):
            (length,) = _read(stream, "<Q")
            names.append(stream.read(length).decode("ascii"))
    if len(names) != len(arrays):
        raise ValueError(f"{path}: {len(arrays)} arrays but {len(names)} names")
    return dict(zip(names, arrays))


def resnet38_imagenet_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """ImageNet weights for ``ResNet38`` from ``resnet38_dict.pth`` (a state dict) or the MXNet ``.params``."""
    if str(path).endswith(".params"):
        return mxnet_to_torch_names(read_mxnet_params(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:
        state = state["state_dict"]
    return {
        k.removeprefix("module."): v
        for k, v in state.items()
        if not k.startswith(("fc8", "linear1000"))
    }
