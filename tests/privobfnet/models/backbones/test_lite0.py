"""EfficientNet-Lite0: the packaged ImageNet weights, their key mapping, photo predictions, and the
backbone inside the ensemble and DeepLabV2 (stride, frozen batch norm, frozen stages)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import skimage.data
import timm
import torch
import torch.nn.functional as F
from PIL import Image

from ops.fetch import copy_packaged_weights
from ops.fetch.sources import WEIGHTS
from privobfnet.models.backbones.lite0 import (
    LITE0_FROZEN_STAGES,
    TIMM_NAME,
    EfficientNetLite0,
    build_lite0,
    imagenet_classifier,
    timm_key,
    timm_state,
)
from privobfnet.models.checkpoints import (
    deeplab_checkpoint,
    ensemble_checkpoint,
    load_deeplab,
    load_ensemble,
)
from privobfnet.models.deeplabv2 import build_deeplab
from privobfnet.models.inputs import IMAGENET_NORM, TF_LITE_NORM, normalize
from privobfnet.models.privobfnet import build_model
from privobfnet.training.deeplab import optimizer_param_groups
from tests.fixtures.models import deeplab_config

MASK_TYPES = ["none", "human", "text"]


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """The packaged ImageNet file, copied and sha256-checked as the `weights` stage does."""
    source = WEIGHTS["lite0"]
    return copy_packaged_weights(source, tmp_path_factory.mktemp("weights") / source.file).path


@pytest.fixture(scope="module")
def classifier(weights_file):
    return imagenet_classifier(weights_file)


def photo(name: str, size: int = 224) -> torch.Tensor:
    """A scikit-image photo squashed to size x size (PIL bilinear), (1, 3, size, size) uint8."""
    image = Image.fromarray(getattr(skimage.data, name)()).resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].contiguous()


def lite0_model(**changes):
    kwargs = dict(
        backbone="lite0",
        tiny_width=8,
        pretrained=None,
        mask_types=MASK_TYPES,
        background_channel=True,
        use_mask_weighting=True,
    )
    torch.manual_seed(0)
    return build_model(**{**kwargs, **changes})


# ---- the weights file ----------------------------------------------------------------------------
def test_every_packaged_key_maps_to_timm_in_file_order(weights_file):
    original = torch.load(weights_file, map_location="cpu", weights_only=True)
    reference = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
    assert [timm_key(k) for k in original] == list(reference)  # the mapping also keeps the order
    assert sum(not k.endswith("num_batches_tracked") for k in original) == 247
    mapped = timm_state(weights_file)
    assert all(mapped[k].shape == reference[k].shape for k in reference)
    # spot checks against the names by hand: block 7 is stage 4's first (1 + 2 + 2 + 3 before it)
    assert timm_key("_blocks.7._project_conv.weight") == "blocks.3.2.conv_pwl.weight"
    assert timm_key("_blocks.8._expand_conv.weight") == "blocks.4.0.conv_pw.weight"
    assert (
        timm_key("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"
    )  # no expansion in stage 0
    assert (
        timm_key("_bn1.running_var") == "bn2.running_var"
        and timm_key("_fc.bias") == "classifier.bias"
    )


@pytest.mark.parametrize(
    "key", ["_blocks.16._bn0.weight", "_blocks.3._se_reduce.weight", "layer1.0.conv1.weight"]
)
def test_keys_of_another_layout_are_refused(key):
    with pytest.raises(ValueError, match="not a key of an EfficientNet-Lite0"):
        timm_key(key)


def test_a_file_missing_a_tensor_is_refused(weights_file, tmp_path):
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    del state["_blocks.15._bn2.running_var"]
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(ValueError, match="broken.pth: weights do not fit"):
        build_lite0(pretrained=broken)
    with pytest.raises(ValueError, match="broken.pth: weights do not fit"):
        imagenet_classifier(broken)


@pytest.mark.parametrize(
    "name,expected_class,expected_p", [("chelsea", 285, 0.79), ("coffee", 967, 0.90)]
)
def test_imagenet_classifier_recognises_the_photos(classifier, name, expected_class, expected_p):
    with torch.no_grad():
        probabilities = classifier(normalize(photo(name), TF_LITE_NORM)).softmax(dim=1)[0]
    assert probabilities.argmax().item() == expected_class  # 285 Egyptian cat, 967 espresso
    assert probabilities[expected_class].item() == pytest.approx(expected_p, abs=0.015)


def test_trunk_holds_the_classifier_s_weights(weights_file, classifier):
    trunk = build_lite0(pretrained=weights_file, output_stride=32).eval()
    images = normalize(photo("chelsea", 160), TF_LITE_NORM)
    with torch.no_grad():
        torch.testing.assert_close(trunk(images), classifier.forward_features(images))


# ---- inputs ----------------------------------------------------------------------------------------
def test_backbones_declare_their_normalisation_and_the_ensemble_converts_to_it(weights_file):
    assert lite0_model(backbone="tiny").backbone.input_norm == IMAGENET_NORM
    model = lite0_model(pretrained=str(weights_file)).eval()
    assert model.backbone.input_norm == TF_LITE_NORM
    image = photo("coffee", 96)
    torch.testing.assert_close(normalize(image, TF_LITE_NORM), (image.float() - 127) / 128)
    # the ensemble is fed ImageNet-normalised images; its backbone sees (x - 127) / 128
    converted = normalize(image) * model.input_scale + model.input_shift
    torch.testing.assert_close(converted, normalize(image, TF_LITE_NORM), rtol=0, atol=1e-5)
    assert lite0_model(backbone="tiny").input_scale is None  # ImageNet backbones: untouched input


# ---- the backbone ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "output_stride,height,width", [(16, 160, 96), (16, 100, 100), (8, 64, 48), (32, 64, 64)]
)
def test_feature_stride_and_channels(output_stride, height, width):
    net = EfficientNetLite0(output_stride=output_stride).eval()
    with torch.no_grad():
        features = net(torch.zeros(1, 3, height, width))
    assert features.shape == (1, 1280, -(-height // output_stride), -(-width // output_stride))
    assert net.out_channels == 1280 and net.output_stride == output_stride


def test_pretrained_backbone_freezes_batch_norm_and_its_first_stages(weights_file):
    net = build_lite0(pretrained=weights_file).train()
    frozen = [net.net.conv_stem, *net.net.blocks[:LITE0_FROZEN_STAGES]]
    batch_norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert net.training and not any(bn.training for bn in batch_norms)
    assert not any(
        p.requires_grad for module in [*frozen, *batch_norms] for p in module.parameters()
    )
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    torch.manual_seed(0)
    net(
        torch.randn(2, 3, 64, 64) * 3 + 1
    ).square().mean().backward()  # statistics unlike ImageNet's
    optimizer.step()
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any(
        ".bn" in k or k.startswith("net.bn") for k in changed
    )  # running stats, affine, counters
    assert not any(
        k.startswith(("net.conv_stem", "net.blocks.0.", "net.blocks.1.", "net.blocks.2."))
        for k in changed
    )
    assert "net.blocks.3.0.conv_pw.weight" in changed and "net.conv_head.weight" in changed


def test_from_scratch_everything_trains():
    net = build_lite0(pretrained=None).train()
    assert all(p.requires_grad for p in net.parameters())
    bn = net.net.blocks[0][0].bn1
    before = bn.running_mean.clone()
    net(torch.randn(2, 3, 32, 32))
    assert bn.training and not torch.equal(before, bn.running_mean)


# ---- inside the ensemble and DeepLabV2 ---------------------------------------------------------
def test_ensemble_with_lite0_runs_forward_backward_and_reloads(weights_file, tmp_path):
    model = lite0_model(pretrained=str(weights_file)).train()
    images, human, text = (
        torch.randn(2, 3, 96, 96),
        torch.rand(2, 1, 96, 96),
        torch.rand(2, 1, 96, 96),
    )
    out = model(images, human, text)
    assert out.cam_logits.shape == (2, 4, 6, 6) and out.attribute_logits.shape == (2, 3)
    (
        F.binary_cross_entropy_with_logits(out.attribute_logits, torch.ones(2, 3))
        + out.cam_logits.mean()
    ).backward()
    assert model.backbone.net.conv_head.weight.grad.abs().sum() > 0
    assert model.backbone.net.blocks[0][0].conv_dw.weight.grad is None  # frozen stage
    backbone_params, _ = model.param_groups()
    assert not any(p is model.backbone.net.conv_stem.weight for p in backbone_params)
    meta = {
        "backbone": "lite0",
        "tiny_width": 8,
        "mask_types": MASK_TYPES,
        "background_channel": True,
        "use_mask_weighting": True,
        "input_size": 96,
        "class_names": list("abc"),
    }
    torch.save(ensemble_checkpoint(model, model, meta), tmp_path / "final.pt")
    loaded, _, _ = load_ensemble(tmp_path / "final.pt")
    torch.testing.assert_close(
        loaded.cams(images, human, text), model.eval().cams(images, human, text)
    )


def test_deeplab_with_lite0_runs_forward_backward_and_reloads(weights_file, tmp_path):
    cfg = deeplab_config(backbone="lite0", pretrained=str(weights_file))
    model = build_deeplab(cfg, n_classes=4).train()
    assert model.aspp.rates == (
        3,
        6,
        9,
        12,
    )  # the reference's 6-24 at stride 8, halved at stride 16
    torch.testing.assert_close(model.mean.flatten(), torch.full((3,), 127 / 255))
    torch.testing.assert_close(model.std.flatten(), torch.full((3,), 128 / 255))
    assert not any(bn.training or bn.weight.requires_grad for bn in model.batch_norms())
    scores = model(torch.rand(2, 3, 64, 80))
    assert scores.shape == (2, 4, 4, 5)
    F.cross_entropy(scores, torch.randint(0, 4, (2, 4, 5))).backward()
    body_group = optimizer_param_groups(model, weight_decay=5e-4)[0]["params"]
    assert all(p.grad is not None for p in body_group)
    assert all(p.grad is None for p in model.body.net.blocks[2].parameters())  # frozen stage
    payload = deeplab_checkpoint(model, cfg, class_names=list("abcd"), iteration=1)
    torch.save(payload, tmp_path / "final.pt")
    loaded, _ = load_deeplab(tmp_path / "final.pt", "cpu")
    image = torch.rand(1, 3, 48, 48)
    torch.testing.assert_close(loaded(image), model.eval()(image))
    scratch = build_deeplab(dataclasses.replace(cfg, pretrained=None), n_classes=4)
    assert not scratch.freeze_bn and all(p.requires_grad for p in scratch.body.parameters())


@pytest.mark.parametrize("frozen_stages", [0, 5])
def test_the_frozen_stage_count_is_a_param_of_both_trainings(weights_file, frozen_stages):
    """train.lite0_frozen_stages and deeplab.lite0_frozen_stages reach the pretrained backbone."""
    from privobfnet.training.ensemble import build_training
    from tests.privobfnet.models.test_privobfnet import _train_cfg as train_config

    def trainable_stages(net: EfficientNetLite0) -> list[int]:
        return [
            i
            for i, stage in enumerate(net.net.blocks)
            if any(p.requires_grad for p in stage.parameters())
        ]

    cfg = train_config(
        backbone="lite0", pretrained=str(weights_file), lite0_frozen_stages=frozen_stages
    )
    model_image, model_cropped, _ = build_training(cfg, MASK_TYPES, torch.device("cpu"))
    assert (
        trainable_stages(model_image.backbone)
        == trainable_stages(model_cropped.backbone)
        == list(range(frozen_stages, 7))
    )
    deeplab = build_deeplab(
        deeplab_config(
            backbone="lite0", pretrained=str(weights_file), lite0_frozen_stages=frozen_stages
        ),
        n_classes=4,
    )
    assert trainable_stages(deeplab.body) == list(range(frozen_stages, 7))
