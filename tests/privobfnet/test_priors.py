"""The refined priors: layouts, face boxes, typed lines, the stacks and the model's gate on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privobfnet.data.errors import DataError
from privobfnet.data.mask_types import load_mask_types, load_prior_types
from privobfnet.data.synthpriv import ATTRIBUTE_IDS
from privobfnet.models.heads import gate_by_prior_masks, mask_type_index, prior_masks_at
from privobfnet.priors import (
    FACE_BOX_GROWTH,
    FACE_PERSON_FLOOR,
    PriorLayout,
    TypedLine,
    build_stacks,
    face_mask,
    layout_for,
    typed_masks,
)
from tests.fixtures.models import tiny_model

TYPES = ("no_region", "face", "human", "typed", "text", "typed", "none")


def test_layout_channels_and_index():
    layout = PriorLayout(TYPES)
    assert layout.human_channels == ("person", "face")
    assert layout.typed_classes == (3, 5)
    assert layout.text_channels == ("lines", "typed:3", "typed:5")
    # [ones, person, face, lines, typed:3, typed:5]; a background channel gates by ones
    assert layout.channel_index(["none"]) == [0, 2, 1, 4, 3, 5, 0, 0]
    assert mask_type_index(TYPES).tolist() == [0, 2, 1, 4, 3, 5, 0]
    coarse = PriorLayout(("none", "human", "text"))
    assert not coarse.refined and coarse.channel_index() == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown prior type"):
        PriorLayout(("hair",))
    with pytest.raises(ValueError, match="priors must be one of"):
        layout_for(["none"], None, "fine")
    assert layout_for(["human"], None, "refined").types == ("human",)  # no refined column


def test_face_mask_grows_each_box():
    mask = face_mask([(10, 20, 30, 40, 0.9)], (64, 64))
    grow = round(FACE_BOX_GROWTH * 20)
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max() + 1) == (20 - grow, 40 + grow)
    assert (cols.min(), cols.max() + 1) == (10 - grow, 30 + grow)
    assert not face_mask(None, (8, 8)).any()
    assert face_mask([(-5, -5, 4, 4)], (8, 8))[0, 0] == 1  # clipped to the frame


def test_typed_masks_take_each_lines_score_for_each_class():
    square = np.array([[2, 2], [10, 2], [10, 6], [2, 6]], float)
    other = square + [0, 8]
    lines = [TypedLine(square, {3: 0.9, 5: 0.2}), TypedLine(other, {5: 0.7}), TypedLine(square, {})]
    masks = typed_masks(lines, (3, 5), (16, 16))
    assert masks.shape == (2, 16, 16)
    assert masks[0, 4, 5] == pytest.approx(0.9) and masks[0, 12, 5] == 0
    assert masks[1, 4, 5] == pytest.approx(0.2) and masks[1, 12, 5] == pytest.approx(0.7)
    assert masks[:, 0, 0].max() == 0


def test_build_stacks_shapes_and_coarse_equivalence():
    shape = (16, 16)
    human = np.full(shape, 255, np.uint8)
    text = np.zeros(shape, np.uint8)
    text[2:6, 2:10] = 255
    layout = PriorLayout(TYPES)
    h, t = build_stacks(
        layout,
        shape,
        human=human,
        text=text,
        face_boxes=[(0, 0, 4, 4, 1.0)],
        lines=[TypedLine(np.array([[2, 2], [10, 2], [10, 6], [2, 6]], float), {3: 1.0})],
    )
    assert h.shape == (2, 16, 16) and t.shape == (3, 16, 16)
    # the face prior: 1 in the (grown) box, the person floor elsewhere
    assert h[0].min() == 1 and h[1, 1, 1] == 1 and h[1, 12, 12] == pytest.approx(FACE_PERSON_FLOOR)
    assert t[1, 4, 4] == 1 and not t[2].any()
    coarse_h, coarse_t = build_stacks(PriorLayout(("human", "text")), shape, human=human, text=text)
    assert coarse_h.shape == (1, 16, 16) and np.array_equal(coarse_t[0], text / 255.0)


def test_the_gate_keeps_a_face_class_inside_its_face_box_only():
    layout = PriorLayout(("face", "human"))
    logits = torch.ones(1, 2, 8, 8)
    person = torch.ones(1, 1, 8, 8)
    face = torch.zeros(1, 1, 8, 8)
    face[..., :2, :2] = 1
    priors = prior_masks_at(torch.cat([person, face], 1), torch.zeros(1, 1, 8, 8), (8, 8))
    gated = torch.relu(gate_by_prior_masks(logits, priors, mask_type_index(layout.types)))
    assert gated[0, 0, :2, :2].min() == 1 and gated[0, 0, 4:, 4:].max() == 0
    assert gated[0, 1].min() == 1  # the body class keeps the whole person


def test_a_model_with_refined_priors_runs_on_the_stacks():
    model = tiny_model(mask_types=list(TYPES)).eval()
    human, text = torch.ones(2, 2, 32, 32), torch.zeros(2, 3, 32, 32)
    out = model(torch.zeros(2, 3, 32, 32), human, text)
    assert out.cam_logits.shape[:2] == (2, len(TYPES)) and out.privacy.shape == (2,)
    # typed classes without a typed line have no positive evidence anywhere
    assert out.cam_logits[:, [3, 5]].max() <= 0


def test_synthpriv_refined_types_refine_the_paper_types():
    coarse = load_mask_types("synthpriv", ATTRIBUTE_IDS)
    refined = load_prior_types("synthpriv", ATTRIBUTE_IDS, "refined")
    assert load_prior_types("synthpriv", ATTRIBUTE_IDS, "coarse") == coarse
    pairs = dict(zip(ATTRIBUTE_IDS, refined))
    assert pairs["a9_face_complete"] == pairs["a10_face_partial"] == "face"
    assert pairs["a11_tattoo"] == "human" and pairs["a19_name_full"] == "typed"
    assert pairs["a30_credit_card"] == "none"
    vispr = load_prior_types("vispr", ["a9_face_complete", "a26_handwriting"], "refined")
    assert vispr == ["face", "text"]  # handwriting has no entity to be typed by


def test_a_refined_type_that_does_not_refine_its_mask_type_names_the_table(tmp_path, monkeypatch):
    from privobfnet.data import mask_types

    table = tmp_path / "mask_types" / "fake.tsv"
    table.parent.mkdir()
    table.write_text(
        "class_name\tmask_type\tentities\trefined\na\ttext\t-\ttyped\nb\ttext\t-\tface\n"
    )
    monkeypatch.setattr(mask_types, "mask_types_file", lambda dataset: table)
    with pytest.raises(DataError, match="class a: refined prior 'typed' needs entities"):
        load_prior_types("fake", ["a"], "refined")
    with pytest.raises(DataError, match=r"fake.tsv.*class b: refined prior 'face' does not refine"):
        load_prior_types("fake", ["b"], "refined")
