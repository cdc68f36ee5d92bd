"""The obfuscation library: snapping, styles, decoding upright, metadata-free encoding, leak rules,
and a whole document through a stand-in Model-Image whose attention half-covers the chosen lines."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torch import nn

from privobfnet.models.privobfnet import ModelOutput
from privobfnet.obfuscate import (
    Detections,
    Obfuscator,
    Preferences,
    PreferencesError,
    SnapRules,
    TextReader,
    apply_style,
    block_size,
    build_detectors,
    check_outputs,
    encode,
    find_leaks,
    hidden_area,
    obfuscate_file,
    parse_preferences,
    snap_attribute,
)
from privobfnet.obfuscate.codec import decode_upright
from privobfnet.obfuscate.detect import TextLine
from privobfnet.obfuscate.engine import LoadedModel
from tests.fixtures.documents import DOCUMENT, reads, reads_any_part, render_document

RULES = SnapRules(min_overlap=0.1, dilate_px=3, margin_px=0)


def _line(x0, y0, x1, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


# ---- snapping ---------------------------------------------------------------------------------
def test_text_attribute_hides_every_line_its_mask_covers_whole():
    lines = (_line(10, 10, 90, 20), _line(10, 40, 90, 50), _line(10, 70, 90, 80))
    mask = np.zeros((100, 100), bool)
    mask[8:22, 10:30] = True  # a quarter of line 1
    mask[48:52, 10:14] = True  # 2 of line 2's 80 x 10 pixels: below min_overlap
    hidden, regions = snap_attribute(
        mask, "text", Detections(text_lines=lines), RULES, "a19_name_full"
    )
    assert hidden[10:20, 10:90].all()  # the whole line, beyond the attention
    assert not hidden[40:50, 30:90].any() and not hidden[70:80].any()
    assert [r.kind for r in regions] == ["text_line"]


def test_text_attribute_without_a_covered_line_hides_its_dilated_mask():
    mask = np.zeros((60, 60), bool)
    mask[20:30, 20:30] = True
    hidden, regions = snap_attribute(mask, "text", Detections(), RULES, "a49_phone")
    assert hidden[17:33, 20:30].all() and not hidden[:15].any()
    assert regions[0].kind == "mask"


def test_human_attribute_snaps_to_faces_and_the_person_outline():
    person = np.zeros((100, 100), np.float32)
    person[20:100, 30:70] = 1.0
    mask = np.zeros((100, 100), bool)
    mask[25:35, 40:50] = True  # on the face box and on the person
    faces = ((35.0, 20.0, 60.0, 45.0, 0.9), (75.0, 75.0, 95.0, 95.0, 0.8))
    hidden, regions = snap_attribute(
        mask, "human", Detections(faces=faces, person=person), RULES, "a9_face_complete"
    )
    assert hidden[20:45, 35:60].all()  # the whole face box it covers
    assert not hidden[75:95, 75:95].any()  # not the other face
    assert not hidden[60:].any()  # the person outside the attention stays
    assert {r.kind for r in regions} == {"face", "person"}


def test_human_attribute_off_every_person_hides_its_mask():
    mask = np.zeros((50, 50), bool)
    mask[10:20, 10:20] = True
    hidden, _ = snap_attribute(
        mask, "human", Detections(person=np.zeros((50, 50), np.float32)), RULES, "a11_tattoo"
    )
    assert hidden[10:20, 10:20].all()


def test_unmasked_attribute_hides_its_dilated_mask_and_margin_grows_everything():
    mask = np.zeros((50, 50), bool)
    mask[20:30, 20:30] = True
    area = hidden_area(
        {"a30_credit_card": (mask, "none")},
        (),
        Detections(),
        (50, 50),
        SnapRules(min_overlap=0.1, dilate_px=2, margin_px=3),
    )
    assert area.mask[15:35, 20:30].all() and not area.mask[:14].any()


def test_hide_all_text_and_faces_need_no_model():
    faces = ((5.0, 5.0, 15.0, 15.0, 0.9),)
    area = hidden_area(
        {},
        ("faces", "text"),
        Detections(text_lines=(_line(20, 30, 40, 35),), faces=faces),
        (50, 50),
        SnapRules(min_overlap=0.1, dilate_px=8, margin_px=0),
    )
    assert area.mask[5:15, 5:15].all() and area.mask[30:35, 20:40].all()
    assert area.mask.sum() == 100 + 21 * 6  # nothing else (polygon fill includes its edge pixels)


# ---- styles -----------------------------------------------------------------------------------
def test_styles_change_only_hidden_pixels_and_pixelate_uses_coarse_blocks():
    image = np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    hidden = np.zeros((80, 100), bool)
    hidden[20:50, 10:70] = True  # short side 30: blocks of at least 5
    for style in ("solid", "pixelate", "blur"):
        out = apply_style(image, hidden, style)
        assert np.array_equal(out[~hidden], image[~hidden]) and not np.array_equal(
            out[hidden], image[hidden]
        )
    assert (apply_style(image, hidden, "solid", color=(9, 8, 7))[hidden] == [9, 8, 7]).all()
    assert (
        block_size(60, 30) == 5
        and block_size(60, 30, requested=8) == 8
        and block_size(60, 30, 2) == 5
    )
    region = apply_style(image, hidden, "pixelate")[20:50, 10:70].astype(int)
    tiles = region.reshape(6, 5, 12, 5, 3)
    assert (tiles == tiles[:, :1, :, :1]).all()  # every 5 x 5 tile holds one colour
    odd = np.zeros((80, 100), bool)
    odd[10:47, 10:81] = True  # 71 x 37: blocks of at least 7, even where 7 does not divide the side
    out = apply_style(image, odd, "pixelate")[10:47, 10:81].astype(int)
    for line in (out[0], out[:, 0]):  # runs of one colour along the first row and column
        changes = np.flatnonzero(np.any(np.diff(line, axis=0) != 0, axis=1)) + 1
        runs = np.diff(np.concatenate([[0], changes, [len(line)]]))
        assert runs.min() >= 7, runs


# ---- preferences -------------------------------------------------------------------------------
def test_preferences_name_the_bad_key():
    assert parse_preferences({"hide": "a,b", "style": "pixelate", "margin_px": 6}).hide == (
        "a",
        "b",
    )
    with pytest.raises(PreferencesError, match="unknown key.*colour"):
        parse_preferences({"colour": [0, 0, 0]}, source="prefs.yaml")
    with pytest.raises(PreferencesError, match="style"):
        parse_preferences({"style": "smudge"})
    with pytest.raises(PreferencesError, match="hide_all"):
        parse_preferences({"hide_all": ["faces", "plates"]})
    with pytest.raises(PreferencesError, match="class_threshold"):
        parse_preferences({"class_threshold": 1.5})


# ---- decoding and encoding ---------------------------------------------------------------------
@pytest.mark.parametrize("orientation", range(1, 9))
def test_decoding_applies_the_orientation_as_pillows_exif_transpose(tmp_path, orientation):
    pixels = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    with Image.open(path) as img:
        expected = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    assert np.array_equal(decode_upright(path, max_pixels=10**6), expected)


def test_encoded_outputs_hold_pixels_only():
    image = np.random.default_rng(1).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    png = encode(image, "PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    with Image.open(io.BytesIO(encode(image, "JPEG"))) as jpeg:
        assert jpeg.format == "JPEG" and not jpeg.getexif() and "icc_profile" not in jpeg.info


def test_outputs_never_replace_an_input(tmp_path):
    a = tmp_path / "a.png"
    with pytest.raises(ValueError, match="input's folder"):
        check_outputs([(a, tmp_path / "a.png")])
    with pytest.raises(ValueError, match="overwrite an input"):
        check_outputs([(a, tmp_path / "a.png")], suffix="x")
    with pytest.raises(ValueError, match="both be written"):
        check_outputs(
            [
                (tmp_path / "x" / "a.png", tmp_path / "o" / "a.png"),
                (tmp_path / "y" / "a.jpg", tmp_path / "o" / "a.png"),
            ]
        )
    check_outputs([(a, tmp_path / "a_hidden.png")], suffix="_hidden")


# ---- the red team's rules ----------------------------------------------------------------------
def test_leaks_are_readable_lines_or_faces_inside_the_hidden_area():
    hidden = np.zeros((100, 100), bool)
    hidden[0:50] = True
    lines = [
        TextLine(_line(10, 10, 60, 20), "Olsen", 0.9),
        TextLine(_line(10, 10, 60, 20), "..", 0.9),
        TextLine(_line(10, 10, 60, 20), "Olsen", 0.2),
        TextLine(_line(10, 70, 60, 80), "Baker", 0.9),
    ]
    faces = [(10.0, 10.0, 30.0, 30.0, 0.9), (10.0, 60.0, 30.0, 90.0, 0.9)]
    leaks = find_leaks(lines, faces, hidden)
    assert [(leak["kind"], leak.get("text")) for leak in leaks] == [
        ("text", "Olsen"),
        ("face", None),
    ]


# ---- a document through a stand-in Model-Image --------------------------------------------------
class AttentionStub(nn.Module):
    """Stands in for Model-Image: fixed CAMs on boxes (fractions of the image) and fixed probabilities."""

    def __init__(
        self, n_classes: int, boxes: dict[int, tuple[float, float, float, float]], size: int = 64
    ):
        super().__init__()
        self.n_classes, self.boxes, self.size = n_classes, boxes, size
        self.unflipped = None  # the first image seen

    def cams(self, images, human_masks, text_masks):
        logits = self(images, human_masks, text_masks, heads=False).cam_logits
        return torch.relu(logits[:, : self.n_classes])

    def forward(self, images, human_masks, text_masks, *, heads: bool = True) -> ModelOutput:
        cams = torch.zeros(images.shape[0], self.n_classes, self.size, self.size)
        for c, (x0, y0, x1, y1) in self.boxes.items():
            s = self.size
            cams[:, c, int(y0 * s) : int(np.ceil(y1 * s)), int(x0 * s) : int(np.ceil(x1 * s))] = 5.0
        if self.unflipped is not None and torch.equal(images, self.unflipped.flip(-1)):
            cams = cams.flip(
                -1
            )  # equivariant, as a CNN is: the flipped view sees the flipped boxes
        self.unflipped = images if self.unflipped is None else self.unflipped
        present = torch.tensor([4.0 if c in self.boxes else -4.0 for c in range(self.n_classes)])
        return ModelOutput(
            cams,
            cams.mean(dim=(2, 3)),
            present.expand(images.shape[0], -1),
            torch.full((images.shape[0],), 0.7),
        )


@pytest.fixture(scope="module")
def text_tools():
    return build_detectors({"text"}, cache_dir="unused", text_limit_side=640), TextReader(
        limit_side=640
    )


def test_chosen_text_attributes_are_unreadable_and_the_others_still_read(tmp_path, text_tools):
    image, items = render_document()
    h, w = image.shape[:2]
    names = ["a0_safe"] + [item.attribute for item in items]

    def part(box, start, stop):  # a horizontal slice of an item's box, as fractions of the image
        x0, y0, x1, y1 = box
        return (x0 + start * (x1 - x0)) / w, y0 / h, (x0 + stop * (x1 - x0)) / w, y1 / h

    chosen = {
        "a19_name_full": (0.0, 0.35),
        "a90_email": (0.4, 0.7),
    }  # attention on part of each line only
    boxes = {
        names.index(i.attribute): part(i.box, *chosen[i.attribute])
        for i in items
        if i.attribute in chosen
    }
    model = LoadedModel(
        AttentionStub(len(names), boxes), names, ["none"] + ["text"] * len(items), 64, {}
    )
    detectors, reader = text_tools
    obfuscator = Obfuscator(
        Preferences(hide=tuple(chosen), margin_px=2), detectors=detectors, model=model
    )
    Image.fromarray(image).save(tmp_path / "doc.png")
    record = obfuscate_file(
        obfuscator, tmp_path / "doc.png", tmp_path / "out" / "doc.png", max_pixels=10**7
    )
    assert record["error"] is None and {r["kind"] for r in record["regions"]} == {"text_line"}
    assert set(record["attributes_found"]) == set(chosen) and record[
        "privacy_score"
    ] == pytest.approx(0.7)
    texts = [line.text for line in reader(np.asarray(Image.open(tmp_path / "out" / "doc.png")))]
    for item in items:
        if item.attribute in chosen:
            assert not reads_any_part(texts, item.text), (item.text, texts)
        else:
            assert reads(texts, item.text), (item.text, texts)
    assert len(DOCUMENT) == len(items)


# ---- what the redact stage measures ----------------------------------------------------------------
def test_redact_tally_counts_leaks_of_readable_strings_and_pixels_changed_outside_the_truth():
    from privobfnet.evaluation.redaction import RedactTally, faces_on, strings_read

    assert strings_read(["Margaret Olsen", "+44 20 7946"], ["name: margaret  olsen", "44-20"]) == [
        True,
        False,
    ]
    truth = np.zeros((10, 10), bool)
    truth[:5] = True
    assert faces_on([(0, 0, 4, 4, 0.9), (0, 6, 4, 10, 0.9)], truth) == 1
    hidden = np.zeros((10, 10), bool)
    hidden[3:7] = True  # 20 truth pixels hidden, 20 outside changed
    tally = RedactTally()
    tally.add(
        strings=["a", "b", "c"],
        read_before=[True, True, False],
        read_after=[True, False, True],
        faces_before=1,
        faces_after=0,
        hidden=hidden,
        truth=truth,
    )
    metrics = tally.metrics()
    assert metrics["pii_leak_rate"] == 0.5  # "c" was never readable: not a leak
    assert metrics["face_leak_rate"] == 0.0 and metrics["leaked_examples"] == ["a"]
    assert metrics["over_redaction"] == pytest.approx(20 / 50) and metrics[
        "coverage"
    ] == pytest.approx(20 / 50)
    assert RedactTally().metrics()["pii_leak_rate"] is None


def test_a_chosen_attribute_keeps_pixels_a_stronger_unchosen_one_also_claims():
    from privobfnet.inference import Prediction
    from privobfnet.obfuscate.engine import attribute_mask

    attention = np.zeros((2, 4, 4), np.float32)
    attention[0, :, :2] = 0.6  # chosen
    attention[1, :, 1:] = 0.9  # not chosen, stronger where they overlap (column 1)
    argmax = np.stack([attention[0] > attention[1], attention[1] >= attention[0]]) & (
        attention > 0.25
    )
    prediction = Prediction(0.5, np.array([0.8, 0.9], np.float32), attention, argmax)
    prefs = Preferences(hide=("a",), bg_threshold=0.25, class_threshold=0.5)
    assert attribute_mask(prediction, 0, prefs)[:, :2].all() and not prediction.masks[0][:, 1].any()
    low = Preferences(hide=("a",), class_threshold=0.85)  # attribute not detected: nothing from it
    assert not attribute_mask(prediction, 0, low).any()
