"""DeepLabV2: the ASPP head, its bodies (from the one backbone factory), frozen batch norm."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.nn import functional as F

from privobfnet.models.backbones import TorchvisionResNet
from privobfnet.models.deeplabv2 import ASPP, MSC, build_deeplab
from privobfnet.training.deeplab import (
    optimizer_param_groups,
)
from tests.fixtures.models import (
    deeplab_config,
)


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A torchvision ResNet-101 state dict on disk (random weights standing in for ImageNet's)."""
    torch.manual_seed(1)
    reference = torchvision.models.resnet101(weights=None)
    with torch.no_grad():  # statistics unlike a fresh BN's, so loading them is visible
        reference.bn1.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("weights") / "resnet101-imagenet.pth"
    torch.save(reference.state_dict(), path)
    return path, reference


@pytest.fixture(scope="module")
def pretrained_deeplab(imagenet_file):
    """DeepLabV2-ResNet-101 built from the weights file (building one takes seconds, so shared)."""
    return build_deeplab(
        deeplab_config(backbone="resnet101", pretrained=str(imagenet_file[0])), n_classes=4
    )


# ---- model -------------------------------------------------------------------------------------
def test_aspp_has_four_dilated_branches_whose_outputs_are_summed():
    torch.manual_seed(0)
    aspp = ASPP(6, 3)
    assert [b.dilation for b in aspp.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert [b.padding for b in aspp.branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert all(b.kernel_size == (3, 3) for b in aspp.branches)
    x = torch.randn(2, 6, 9, 11)
    out = aspp(x)
    assert out.shape == (2, 3, 9, 11)
    torch.testing.assert_close(out, sum(b(x) for b in aspp.branches))
    # a single pixel's response reaches exactly +-rate away, nowhere in between (dilated, not dense)
    impulse = torch.zeros(1, 6, 61, 61)
    impulse[0, :, 30, 30] = 1.0
    with torch.no_grad():
        for b in aspp.branches:
            b.bias.zero_()
        touched = aspp(impulse).abs().sum(dim=(0, 1)) > 0
    rows = sorted(set(torch.nonzero(touched)[:, 0].tolist()))
    assert rows == sorted({30 + s * r for r in (6, 12, 18, 24) for s in (-1, 0, 1)})


@pytest.mark.parametrize("height,width", [(64, 96), (65, 71)])
def test_tiny_deeplab_has_output_stride_8(height, width):
    model = build_deeplab(deeplab_config(), n_classes=5).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, height, width))
    assert out.shape == (2, 5, -(-height // 8), -(-width // 8))


def test_resnet101_variant_builds_dilated_and_runs_without_weights():
    model = build_deeplab(deeplab_config(backbone="resnet101"), n_classes=4).eval()
    body = model.body
    assert body.layer3[0].conv2.stride == (1, 1) and body.layer3[1].conv2.dilation == (2, 2)
    assert body.layer4[0].conv2.stride == (1, 1) and body.layer4[1].conv2.dilation == (4, 4)
    assert model.aspp.branches[0].in_channels == 2048
    with torch.no_grad():
        out = model(torch.rand(1, 3, 33, 41))
    assert out.shape == (1, 4, 5, 6)  # ceil(33 / 8), ceil(41 / 8)
    # no ImageNet statistics to keep: batch norm must learn, or 101 layers go unnormalised
    assert not model.freeze_bn and all(
        p.requires_grad for bn in model.batch_norms() for p in bn.parameters()
    )


def test_resnet101_loads_imagenet_weights_from_a_local_file(imagenet_file, pretrained_deeplab):
    path, reference = imagenet_file
    body = pretrained_deeplab.body
    torch.testing.assert_close(
        body.layer4[2].conv3.weight, reference.layer4[2].conv3.weight, rtol=0, atol=0
    )
    torch.testing.assert_close(body.bn1.running_var, reference.bn1.running_var, rtol=0, atol=0)
    broken = {k: v for k, v in reference.state_dict().items() if not k.startswith("layer3.5.")}
    broken_path = path.with_name("broken.pth")
    torch.save(broken, broken_path)
    with pytest.raises(ValueError, match="layer3.5"):  # a partial file is refused, not half-loaded
        TorchvisionResNet(101).load_imagenet(broken_path)


def test_tiny_backbone_refuses_pretrained_weights():
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_deeplab(deeplab_config(pretrained="data/weights/x.pth"), n_classes=3)


def test_pretrained_resnet101_batch_norm_is_frozen_and_tiny_batch_norm_learns(pretrained_deeplab):
    model = pretrained_deeplab.train()
    bns = model.batch_norms()
    assert bns and all(not bn.training for bn in bns) and model.aspp.training
    assert all(not p.requires_grad for bn in bns for p in bn.parameters())
    before = bns[0].running_mean.clone()
    model(torch.rand(2, 3, 24, 24) * 5)  # a train-mode forward must not touch the frozen statistics
    torch.testing.assert_close(bns[0].running_mean, before, rtol=0, atol=0)
    grouped = {id(p) for g in optimizer_param_groups(model, weight_decay=0.0) for p in g["params"]}
    assert not grouped & {id(p) for bn in bns for p in bn.parameters()}

    tiny = build_deeplab(deeplab_config(), n_classes=3).train()
    tiny_bn = tiny.batch_norms()[0]
    assert tiny_bn.training and tiny_bn.weight.requires_grad
    tiny(torch.rand(2, 3, 24, 24))
    assert tiny_bn.running_mean.abs().sum() > 0


def test_msc_fuses_the_scales_by_a_pixelwise_max_and_trains_on_each():
    torch.manual_seed(0)
    model = build_deeplab(deeplab_config(), n_classes=3).eval()
    images = torch.rand(1, 3, 48, 40)
    msc = MSC(model, (0.5, 0.75)).eval()
    fused = msc(images)
    full = model(images)
    assert fused.shape == full.shape
    assert (fused >= full - 1e-6).all()  # the max over the scales includes the full image
    small = torch.nn.functional.interpolate(
        model(torch.nn.functional.interpolate(images, scale_factor=0.5, mode="bilinear")),
        size=full.shape[-2:],
        mode="bilinear",
    )
    assert (fused >= small - 1e-6).all()
    outputs = msc.train()(images)
    assert len(outputs) == 4  # full, 0.5, 0.75, fused
    assert [tuple(o.shape[-2:]) for o in outputs[:3]] == [(6, 5), (3, 3), (5, 4)]
    stacked = [outputs[0], *(F.interpolate(o, size=(6, 5), mode="bilinear") for o in outputs[1:3])]
    assert torch.equal(outputs[3], torch.stack(stacked).amax(dim=0))
