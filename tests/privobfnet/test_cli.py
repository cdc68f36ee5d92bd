"""The `privobfnet` command: rendered documents, the astronaut's face, metadata, fail-closed batches,
bad inputs, output-folder refusals, and the model's commands (tiny untrained checkpoint)."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo
from skimage import data as skdata

import privobfnet.cli as cli
from privobfnet.data.synthpriv import ATTRIBUTES
from privobfnet.masks import build_backend
from privobfnet.masks.base import MaskResult
from privobfnet.models.checkpoints import ensemble_checkpoint, model_meta
from privobfnet.models.privobfnet import build_model
from privobfnet.obfuscate import Detectors, TextReader, batch
from privobfnet.obfuscate.detect import TextLine
from tests.fixtures.documents import reads, reads_any_part, render_document

SECOND_DOCUMENT = [  # other fonts, sizes and rotations than fixtures_documents.DOCUMENT
    ("a19_name_full", "Jonas Whitfield", "DejaVuSerif-Italic.ttf", 24, -6),
    ("a49_phone", "(555) 013 4477", "DejaVuSans.ttf", 28, 0),
    ("a90_email", "jonas.w@mailbox.net", "DejaVuSansMono-Bold.ttf", 18, 8),
    ("a82_date_time", "2023-07-19 08:45", "DejaVuSans-Oblique.ttf", 20, 3),
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    """Detector model cache for the module (MediaPipe files fetched on first use)."""
    return str(tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader(limit_side=640)


def run(*args: str, cache: str) -> int:
    return cli.main(
        [*args, "--cache-dir", cache, "--no-progress"] if args[0] == "obfuscate" else [*args]
    )


def report(path: Path) -> dict:
    return json.loads(path.read_text())


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


# ---- what is hidden ------------------------------------------------------------------------------
def test_hide_all_text_leaves_no_string_readable(tmp_path, cache, reader):
    (tmp_path / "in").mkdir()
    documents = [render_document(), render_document(SECOND_DOCUMENT, size=(420, 300))]
    for n, (image, _) in enumerate(documents):
        Image.fromarray(image).save(tmp_path / "in" / f"doc{n}.png")
    status = run(
        "obfuscate",
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "out"),
        "--hide-all",
        "text",
        "--verify",
        cache=cache,
    )
    assert status == 0
    records = report(tmp_path / "out" / cli.REPORT_NAME)["images"]
    assert [Path(r["input"]).name for r in records] == ["doc0.png", "doc1.png"]
    assert all(r["leaks"] == [] and r["text_lines_found"] >= 4 for r in records)
    assert set(records[0]["timings_ms"]) == {
        "decode",
        "ocr",
        "face_person",
        "compose",
        "encode",
        "verify",
    }
    for n, (image, items) in enumerate(documents):
        assert all(
            reads([line.text for line in reader(image)], item.text) for item in items
        )  # a fair test
        texts = [line.text for line in reader(read_rgb(tmp_path / "out" / f"doc{n}.png"))]
        assert not any(reads_any_part(texts, item.text) for item in items), texts


def test_hide_all_faces_on_the_astronaut(tmp_path, cache):
    photo = skdata.astronaut()
    Image.fromarray(photo).save(tmp_path / "astronaut.png")
    status = run(
        "obfuscate",
        str(tmp_path / "astronaut.png"),
        "--out",
        str(tmp_path / "out"),
        "--hide-all",
        "faces",
        "--margin",
        "4",
        "--verify",
        cache=cache,
    )
    assert status == 0
    faces = build_backend("face", "mediapipe", cache_dir=cache)
    (face,) = faces(photo).boxes
    out = read_rgb(tmp_path / "out" / "astronaut.png")
    assert faces(out).boxes == ()
    x0, y0, x1, y1 = (int(v) for v in face[:4])
    assert (out[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] == 0).all()  # solid fill by default
    far = np.ones(photo.shape[:2], bool)
    far[max(0, y0 - 20) : y1 + 20, max(0, x0 - 20) : x1 + 20] = False
    assert np.array_equal(out[far], photo[far])  # PNG in, PNG out: the rest is untouched


# ---- metadata --------------------------------------------------------------------------------------
def _jpeg_markers(data: bytes) -> list[int]:
    """Marker codes of a JPEG's segments up to the start of scan."""
    markers, i = [], 2
    while i < len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        markers.append(marker)
        if marker == 0xDA:
            break
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return markers


def _png_chunks(data: bytes) -> list[bytes]:
    chunks, i = [], 8
    while i < len(data):
        length = struct.unpack(">I", data[i : i + 4])[0]
        chunks.append(data[i + 4 : i + 8])
        i += 12 + length
    return chunks


def test_outputs_carry_no_metadata_and_are_upright(tmp_path, cache):
    (tmp_path / "in").mkdir()
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :30] = (200, 30, 30)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    exif[0x010F] = "CameraMaker"
    exif.get_ifd(0x8825).update({1: "N", 2: (51.0, 30.0, 26.0), 3: "W", 4: (0.0, 7.0, 39.0)})  # GPS
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description>secret-xmp</rdf:Description></x:xmpmeta>'
    Image.fromarray(pixels).save(
        tmp_path / "in" / "photo.jpg",
        exif=exif,
        icc_profile=icc,
        comment=b"secret-comment",
        xmp=xmp,
    )
    info = PngInfo()
    info.add_text("Author", "secret-author")
    info.add_text("Comment", "secret-ztxt", zip=True)
    info.add_itxt("Description", "secret-itxt", lang="en")
    Image.fromarray(pixels).save(
        tmp_path / "in" / "scan.png", pnginfo=info, icc_profile=icc, exif=exif
    )
    with Image.open(tmp_path / "in" / "photo.jpg") as check:  # the fixture really holds it all
        assert (
            check.getexif().get_ifd(0x8825)
            and check.info.get("icc_profile")
            and b"secret-xmp" in check.info["xmp"]
        )

    status = run(
        "obfuscate",
        str(tmp_path / "in" / "*"),
        "--out",
        str(tmp_path / "out"),
        "--hide-all",
        "faces",
        cache=cache,
    )
    assert status == 0
    jpeg = (tmp_path / "out" / "photo.jpg").read_bytes()
    png = (tmp_path / "out" / "scan.png").read_bytes()
    for data in (jpeg, png):
        assert not re.search(rb"secret|CameraMaker|Exif|GPS|xmpmeta|ICC_PROFILE|Photoshop", data)
    assert set(_jpeg_markers(jpeg)) <= {
        0xD8,
        0xE0,
        0xDB,
        0xC0,
        0xC4,
        0xDA,
    }  # SOI, JFIF, tables, frame, scan
    assert set(_png_chunks(png)) == {b"IHDR", b"IDAT", b"IEND"}
    upright = read_rgb(tmp_path / "out" / "photo.jpg")
    assert upright.shape == (60, 40, 3)  # orientation 6 applied: the red half is now on top
    assert upright[:25, :, 0].mean() > 150 and upright[35:, :, 0].mean() < 50


@pytest.mark.slow
def test_worker_processes_give_the_same_outputs(tmp_path, cache):
    (tmp_path / "in").mkdir()
    for n in range(3):
        Image.fromarray(np.full((40, 40, 3), 60 * n, np.uint8)).save(
            tmp_path / "in" / f"img{n}.png"
        )
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    outputs = {}
    for workers in ("1", "2"):  # spawned processes, each with its own detectors
        out = tmp_path / f"out{workers}"
        status = run(
            "obfuscate",
            str(tmp_path / "in"),
            "--out",
            str(out),
            "--hide-all",
            "faces,text",
            "--workers",
            workers,
            cache=cache,
        )
        assert status == cli.EXIT_FAILED
        records = report(out / cli.REPORT_NAME)["images"]
        assert [Path(r["input"]).name for r in records] == [
            "broken.png",
            "img0.png",
            "img1.png",
            "img2.png",
        ]
        outputs[workers] = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert outputs["1"] == outputs["2"] and len(outputs["1"]) == 3


# ---- failures ---------------------------------------------------------------------------------------
class FaceDetectorThatFails:
    """Raises on images whose top-left pixel is pure red; finds no face elsewhere."""

    name, kind = "failing", "face"

    def __call__(self, image, *, image_id=None):
        if tuple(image[0, 0]) == (255, 0, 0):
            raise RuntimeError("detector crashed")
        return MaskResult(np.zeros(image.shape[:2], np.float32))


def test_a_failing_detector_fails_only_its_image(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(
        batch, "build_detectors", lambda kinds, **_: Detectors(face=FaceDetectorThatFails())
    )
    (tmp_path / "in").mkdir()
    for n in range(3):
        pixels = np.full((32, 32, 3), 90, np.uint8)
        pixels[0, 0] = (255, 0, 0) if n == 1 else (0, 0, 0)
        Image.fromarray(pixels).save(tmp_path / "in" / f"img{n}.png")
    status = run(
        "obfuscate",
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "out"),
        "--hide-all",
        "faces",
        cache=cache,
    )
    assert status == cli.EXIT_FAILED
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "img0.png",
        "img2.png",
        cli.REPORT_NAME,
    ]
    summary = report(tmp_path / "out" / cli.REPORT_NAME)
    (error,) = [r for r in summary["images"] if r["error"]]
    assert (
        error["input"].endswith("img1.png")
        and "detector crashed" in error["error"]
        and error["output"] is None
    )
    assert summary["summary"] == {"images": 3, "written": 2, "failed": 1, "with_leaks": None}


def _png_bomb(path: Path, side: int = 40_000) -> None:
    """A valid PNG header announcing side x side pixels, with almost no data behind it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_bad_inputs_are_reported_and_the_batch_goes_on(tmp_path, cache):
    folder = tmp_path / "in"
    folder.mkdir()
    good = np.full((48, 64, 3), 120, np.uint8)
    Image.fromarray(good).save(folder / "good.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        folder / "full.jpg"
    )
    (folder / "truncated.jpg").write_bytes((folder / "full.jpg").read_bytes()[:900])
    (folder / "full.jpg").unlink()
    Image.new("RGB", (40, 30), (220, 20, 20)).convert("CMYK").save(folder / "cmyk.jpg")
    _png_bomb(folder / "bomb.png")
    status = run(
        "obfuscate", str(folder), "--out", str(tmp_path / "out"), "--hide-all", "faces", cache=cache
    )
    assert status == cli.EXIT_FAILED
    records = {
        Path(r["input"]).name: r for r in report(tmp_path / "out" / cli.REPORT_NAME)["images"]
    }
    assert records["good.png"]["error"] is None and (tmp_path / "out" / "good.png").exists()
    assert "not a readable image" in records["corrupt.png"]["error"]
    assert "truncated" in records["truncated.jpg"]["error"]
    assert "decompression bomb" in records["bomb.png"]["error"]
    for name in ("corrupt.png", "truncated.jpg", "bomb.png"):
        assert str(folder / name) in records[name]["error"] and records[name]["output"] is None
    cmyk = records["cmyk.jpg"]
    if cmyk["error"] is None:  # converted by load_rgb: the colour must survive
        assert (
            np.abs(read_rgb(tmp_path / "out" / "cmyk.jpg").mean((0, 1)) - (220, 20, 20)).max() < 25
        )
    else:  # refused: by name and reason
        assert str(folder / "cmyk.jpg") in cmyk["error"] and "mode" in cmyk["error"]
    assert not list((tmp_path / "out").glob(".*.tmp"))


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "I;16", "CMYK"])
def test_every_image_mode_gives_a_correct_output_or_a_clear_error(tmp_path, cache, mode):
    rgb = Image.new("RGB", (30, 20), (200, 40, 40))
    image = {
        "RGBA": lambda: rgb.convert("RGBA"),
        "P": lambda: rgb.convert("P"),
        "LA": lambda: rgb.convert("LA"),
        "I;16": lambda: Image.fromarray(np.full((20, 30), 40000, np.uint16)),
        "CMYK": lambda: rgb.convert("CMYK"),
    }[mode]()
    source = tmp_path / ("in.tif" if mode == "CMYK" else "in.png")
    image.save(source)
    status = run(
        "obfuscate", str(source), "--out", str(tmp_path / "out"), "--hide-all", "faces", cache=cache
    )
    (record,) = report(tmp_path / "out" / cli.REPORT_NAME)["images"]
    if record["error"] is None:  # decoded: what the input shows is what the output shows
        assert status == 0
        expected = np.asarray(image.convert("RGB"), np.float64).mean((0, 1))
        assert (
            np.abs(read_rgb(tmp_path / "out" / "in.png").mean((0, 1)) - expected).max() < 3
            or mode == "I;16"
        )
    else:  # refused by name and reason, nothing written
        assert status == cli.EXIT_FAILED and str(source) in record["error"]
        assert not (tmp_path / "out" / "in.png").exists()


def test_blur_warns_and_preferences_files_are_checked(tmp_path, cache, capsys):
    Image.fromarray(skdata.astronaut()[::2, ::2]).save(tmp_path / "a.png")
    (tmp_path / "prefs.yaml").write_text("hide_all: [faces]\nstyle: blur\nmargin_px: 6\n")
    assert (
        run(
            "obfuscate",
            str(tmp_path / "a.png"),
            "--out",
            str(tmp_path / "out"),
            "--prefs",
            str(tmp_path / "prefs.yaml"),
            cache=cache,
        )
        == 0
    )
    assert "warning: blur" in capsys.readouterr().err
    assert report(tmp_path / "out" / cli.REPORT_NAME)["preferences"]["margin_px"] == 6
    (tmp_path / "bad.yaml").write_text("hide_all: [faces]\nstlye: solid\n")
    assert (
        run(
            "obfuscate",
            str(tmp_path / "a.png"),
            "--out",
            str(tmp_path / "out2"),
            "--prefs",
            str(tmp_path / "bad.yaml"),
            cache=cache,
        )
        == cli.EXIT_USAGE
    )
    assert "stlye" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_an_input_folder_is_no_output_folder_without_a_suffix(tmp_path, cache, capsys):
    Image.fromarray(np.full((20, 20, 3), 50, np.uint8)).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    assert (
        run(
            "obfuscate",
            str(tmp_path / "a.png"),
            "--out",
            str(tmp_path),
            "--hide-all",
            "faces",
            cache=cache,
        )
        == cli.EXIT_USAGE
    )
    assert "--suffix" in capsys.readouterr().err and (tmp_path / "a.png").read_bytes() == before
    assert (
        run(
            "obfuscate",
            str(tmp_path / "a.png"),
            "--out",
            str(tmp_path),
            "--hide-all",
            "faces",
            "--suffix",
            "_hidden",
            cache=cache,
        )
        == 0
    )
    assert (tmp_path / "a_hidden.png").exists() and (tmp_path / "a.png").read_bytes() == before


# ---- the model's commands -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny ensemble over SynthPriv's attributes (the commands' plumbing, not its accuracy)."""
    names, types = [a.attribute_id for a in ATTRIBUTES], [a.mask_type for a in ATTRIBUTES]
    torch.manual_seed(0)
    nets = [
        build_model(
            backbone="tiny",
            tiny_width=8,
            pretrained=None,
            mask_types=types,
            background_channel=False,
            use_mask_weighting=True,
        )
        for _ in range(2)
    ]
    meta = model_meta(
        backbone="tiny",
        tiny_width=8,
        mask_types=types,
        class_names=names,
        background_channel=False,
        use_mask_weighting=True,
        input_size=64,
        dataset="synthpriv",
    )
    path = tmp_path_factory.mktemp("model") / "final.pt"
    torch.save(ensemble_checkpoint(*nets, meta), path)
    return path


def test_attributes_and_score_commands(tmp_path, checkpoint, cache, capsys):
    assert cli.main(["attributes", "--model", str(checkpoint), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in table] == [a.attribute_id for a in ATTRIBUTES]
    assert table[1] == {
        "id": "a9_face_complete",
        "mask_type": "human",
        "description": "a fully visible face",
    }
    image, _ = render_document()
    Image.fromarray(image).save(tmp_path / "doc.png")
    status = cli.main(
        [
            "score",
            str(tmp_path / "doc.png"),
            str(tmp_path / "absent.png"),
            "--model",
            str(checkpoint),
            "--json",
            "--cache-dir",
            cache,
        ]
    )
    rows = json.loads(capsys.readouterr().out)
    assert status == cli.EXIT_FAILED and "file missing" in rows[1]["error"]
    assert 0 <= rows[0]["privacy_score"] <= 1 and len(rows[0]["attributes"]) == len(ATTRIBUTES)


def test_obfuscate_with_a_model_reports_score_and_attributes(tmp_path, checkpoint, cache, capsys):
    image, _ = render_document()
    Image.fromarray(image).save(tmp_path / "doc.png")
    args = [
        "obfuscate",
        str(tmp_path / "doc.png"),
        "--out",
        str(tmp_path / "out"),
        "--model",
        str(checkpoint),
        "--report",
        str(tmp_path / "r.json"),
    ]
    assert (
        run(*args, "--hide", "a19_name_full,a9_face_complete", "--threshold", "0", cache=cache) == 0
    )
    (record,) = report(tmp_path / "r.json")["images"]
    assert 0 <= record["privacy_score"] <= 1 and len(record["attributes_found"]) == len(ATTRIBUTES)
    assert {r["source"] for r in record["regions"]} <= {"a19_name_full", "a9_face_complete"}
    assert "model" in record["timings_ms"]
    assert run(*args, "--hide", "a999_nothing", cache=cache) == cli.EXIT_USAGE
    assert "a999_nothing" in capsys.readouterr().err


@pytest.mark.slow
def test_model_from_the_mlflow_registry(tmp_path, checkpoint, cache, capsys, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # the store's artifacts (./mlruns) go there

    from ops.registry import CHAMPION, ENSEMBLE_MODEL, register_ensemble, register_model
    from privobfnet.obfuscate import load_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("obfuscate-test")
    with mlflow.start_run() as active:
        register_ensemble(
            active.info,
            checkpoint=checkpoint,
            metrics={},
            profile="ci",
            headline_split="test",
            cache_dir=cache,
        )
        # a version logged before the pyfunc model: the network, final.pt as an extra file
        register_model(
            active.info,
            load_model(checkpoint).network,
            name="old-ensemble",
            checkpoint=checkpoint,
            headline={},
            description="tiny",
        )
    for spec in (f"models:/{ENSEMBLE_MODEL}@{CHAMPION}", "models:/old-ensemble/latest"):
        status = cli.main(["attributes", "--model", spec, "--tracking-uri", uri, "--json"])
        assert status == 0 and len(json.loads(capsys.readouterr().out)) == len(ATTRIBUTES), spec
    for spec in ("models:/no-such-model/1", f"models:/{ENSEMBLE_MODEL}@no-such-alias"):
        assert cli.main(["attributes", "--model", spec, "--tracking-uri", uri]) == cli.EXIT_USAGE
        assert spec.rsplit("/", 1)[-1].split("@")[-1] in capsys.readouterr().err


def test_hide_all_people_hides_the_person_and_not_the_sky(tmp_path, cache):
    Image.fromarray(skdata.astronaut()).save(tmp_path / "astronaut.png")
    assert (
        run(
            "obfuscate",
            str(tmp_path / "astronaut.png"),
            "--out",
            str(tmp_path / "out"),
            "--hide-all",
            "people",
            "--margin",
            "0",
            cache=cache,
        )
        == 0
    )
    (record,) = report(tmp_path / "out" / cli.REPORT_NAME)["images"]
    assert [r["kind"] for r in record["regions"]] == ["person"] and 0.2 < record[
        "hidden_share"
    ] < 0.9
    out = read_rgb(tmp_path / "out" / "astronaut.png")
    assert (out[300:400, 150:300] == 0).all()  # her suit
    assert np.array_equal(out[:40, 420:], skdata.astronaut()[:40, 420:])  # the top-right corner


def test_a_leak_found_by_the_red_team_sets_the_exit_status(tmp_path, cache, monkeypatch):
    image, items = render_document()
    Image.fromarray(image).save(tmp_path / "doc.png")
    x0, y0, x1, y1 = items[0].box

    class ReaderThatStillReads:  # stands in for an OCR that reads through the fill
        def __init__(self, **_):
            pass

        def __call__(self, output):
            polygon = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
            return [TextLine(polygon, items[0].text, 0.99)]

    monkeypatch.setattr(batch, "TextReader", ReaderThatStillReads)
    status = run(
        "obfuscate",
        str(tmp_path / "doc.png"),
        "--out",
        str(tmp_path / "out"),
        "--hide-all",
        "text",
        "--verify",
        cache=cache,
    )
    assert status == cli.EXIT_LEAKS
    (record,) = report(tmp_path / "out" / cli.REPORT_NAME)["images"]
    assert [(leak["kind"], leak["text"]) for leak in record["leaks"]] == [("text", items[0].text)]
    assert (tmp_path / "out" / "doc.png").exists()  # written, and flagged


def test_verbose_and_quiet_change_what_is_logged(checkpoint, capsys, monkeypatch):
    monkeypatch.delenv("PRIVOBFNET_LOG_LEVEL", raising=False)

    def logged(*flags: str) -> str:
        assert cli.main(["attributes", "--model", str(checkpoint), "--json", *flags]) == 0
        captured = capsys.readouterr()
        assert len(json.loads(captured.out)) == len(ATTRIBUTES)  # the output itself never changes
        return captured.err

    default, verbose, quiet = logged(), logged("-v"), logged("-q")
    resolved = f"INFO privobfnet.cli: model {checkpoint}: checkpoint {checkpoint}"
    assert resolved in default and "DEBUG" not in default
    assert resolved in verbose and "DEBUG privobfnet.cli: privobfnet " in verbose
    assert quiet == ""
    with pytest.raises(SystemExit):
        cli.main(["attributes", "--model", str(checkpoint), "-v", "-q"])
    assert "not allowed with argument" in capsys.readouterr().err
