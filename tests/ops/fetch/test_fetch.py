"""ops.fetch against a local HTTP server (127.0.0.1 only): resume, retries, checksums, layouts."""

from __future__ import annotations

import hashlib
import io
import random
import re
import socket
import tarfile
import zipfile
from http.server import BaseHTTPRequestHandler

import pytest

from ops.fetch import (
    COMPLETE_MARKER,
    DATASETS,
    WEIGHTS,
    Checksum,
    ChecksumMismatch,
    DownloadError,
    ManualDownloadRequired,
    download,
    fetch_dataset,
    fetch_weights,
    is_complete,
    resolve,
)
from privobfnet.config import DownloadConfig
from privobfnet.data.errors import DataError
from tests.conftest import local_http_server

BODY = random.Random(0).randbytes(64 * 1024)
MD5 = hashlib.md5(BODY).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(match.group(1)) if match and not srv.ignore_range else 0
        if start >= len(body) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if srv.cuts.get(self.path, 0) > 0:  # send half, then drop the connection
            srv.cuts[self.path] -= 1
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server():
    with local_http_server(_Handler, files={}, requests=[], cuts={}, ignore_range=False) as httpd:
        yield httpd


def _get(url, dest, checksum=Checksum("md5", MD5), retries=2, **kw):
    return download(
        url,
        dest,
        checksum=checksum,
        timeout_s=5,
        retries=retries,
        chunk_bytes=1024,
        progress=False,
        backoff_s=0,
        **kw,
    )


def test_download_verifies_and_then_reuses(server, tmp_path):
    server.files["/f.bin"] = BODY
    got = _get(server.url + "/f.bin", tmp_path / "f.bin")
    assert got.path.read_bytes() == BODY and got.transferred == len(BODY)
    assert not (tmp_path / "f.bin.part").exists()
    again = _get(server.url + "/f.bin", tmp_path / "f.bin")
    assert again.transferred == 0 and len(server.requests) == 1  # no second request


def test_checksum_mismatch_removes_the_file_and_names_both_digests(server, tmp_path):
    server.files["/f.bin"] = BODY
    wrong = "0" * 32
    with pytest.raises(ChecksumMismatch) as err:
        _get(server.url + "/f.bin", tmp_path / "f.bin", checksum=Checksum("md5", wrong))
    assert "f.bin" in str(err.value) and wrong in str(err.value) and MD5 in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_resume_sends_range_and_fetches_only_the_rest(server, tmp_path):
    server.files["/f.bin"] = BODY
    (tmp_path / "f.bin.part").write_bytes(BODY[:10_000])
    got = _get(server.url + "/f.bin", tmp_path / "f.bin")
    assert server.requests == [("/f.bin", "bytes=10000-")]
    assert got.transferred == len(BODY) - 10_000 and got.path.read_bytes() == BODY


def test_server_ignoring_range_restarts_from_scratch(server, tmp_path):
    server.files["/f.bin"] = BODY
    server.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes that must not survive")
    got = _get(server.url + "/f.bin", tmp_path / "f.bin")
    assert server.requests[0][1] is not None  # a Range was asked for, and answered with 200
    assert got.path.read_bytes() == BODY and got.transferred == len(BODY)


def test_dropped_connection_is_resumed_on_retry(server, tmp_path):
    server.files["/f.bin"] = BODY
    server.cuts["/f.bin"] = 1
    got = _get(server.url + "/f.bin", tmp_path / "f.bin")
    assert got.path.read_bytes() == BODY
    assert len(server.requests) == 2
    resumed_at = int(server.requests[1][1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(BODY) // 2


def test_connection_dropping_every_time_errors_and_keeps_the_part(server, tmp_path):
    server.files["/f.bin"] = BODY
    server.cuts["/f.bin"] = 99
    url = server.url + "/f.bin"
    with pytest.raises(DownloadError) as err:
        _get(url, tmp_path / "f.bin", retries=1)
    assert url in str(err.value) and "2 attempts" in str(err.value)
    assert (tmp_path / "f.bin.part").exists() and not (tmp_path / "f.bin").exists()


def test_http_404_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        _get(server.url + "/missing.bin", tmp_path / "missing.bin", retries=3)
    assert len(server.requests) == 1


def test_offline_names_the_url_and_the_manual_path(tmp_path):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/VOCtrainval_11-May-2012.tar"
    dest = tmp_path / ".downloads" / "VOCtrainval_11-May-2012.tar"
    with pytest.raises(DownloadError) as err:
        _get(url, dest, retries=1)
    message = str(err.value)
    assert "offline" in message and url in message and str(dest) in message


def test_catalogue_and_overrides():
    voc_tar = DATASETS["voc"][0]
    assert voc_tar.checksum == Checksum("md5", "6cd6e144f989b92b3379bac3b3de84fd")
    assert all(
        s.url.startswith(("http://", "https://")) for srcs in DATASETS.values() for s in srcs
    )
    assert WEIGHTS["resnet38"].url is None and WEIGHTS["resnet101"].checksum.matches(
        "63fe2227" + "0" * 56
    )
    assert resolve(voc_tar, {voc_tar.file: "http://mirror/v.tar"}) == (
        "http://mirror/v.tar",
        voc_tar.checksum,
    )
    pinned = resolve(
        DATASETS["voc"][1], {"SegmentationClassAug.zip": "http://m/s.zip#sha256=" + "ab" * 32}
    )
    assert pinned == ("http://m/s.zip", Checksum("sha256", "ab" * 32))
    with pytest.raises(ValueError, match="download.base_urls.train_aug.txt"):
        resolve(DATASETS["voc"][2], {"train_aug.txt": "http://m/t.txt#crc=1"})


# ------------------------------------------------------------------------------------------
# fetch_dataset / fetch_weights end to end
# ------------------------------------------------------------------------------------------
def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _cfg(base_urls: dict[str, str]) -> DownloadConfig:
    return DownloadConfig(timeout_s=5, retries=1, chunk_bytes=4096, base_urls=base_urls)


def test_fetch_voc_end_to_end(server, tmp_path):
    voc = "VOCdevkit/VOC2012/"
    server.files["/voc.tar"] = _tar_bytes(
        {
            voc + "JPEGImages/2007_000032.jpg": b"jpeg",
            voc + "Annotations/2007_000032.xml": b"<annotation/>",
            voc + "SegmentationClass/2007_000032.png": b"png",
            voc + "ImageSets/Segmentation/train.txt": b"2007_000032\n",
            voc + "ImageSets/Segmentation/val.txt": b"",
        }
    )
    server.files["/sbd.zip"] = _zip_bytes(
        {
            "SegmentationClassAug/2007_000032.png": b"aug32",
            "SegmentationClassAug/2007_000039.png": b"aug39",
            "__MACOSX/SegmentationClassAug/._2007_000032.png": b"junk",
        }
    )
    server.files["/trainaug.txt"] = b"2007_000032\n2007_000039\n"
    md5 = hashlib.md5(server.files["/voc.tar"]).hexdigest()
    sha = hashlib.sha256(server.files["/trainaug.txt"]).hexdigest()
    cfg = _cfg(
        {
            "VOCtrainval_11-May-2012.tar": f"{server.url}/voc.tar#md5={md5}",
            "SegmentationClassAug.zip": f"{server.url}/sbd.zip",  # unpinned: integrity check only
            "trainaug.txt": f"{server.url}/trainaug.txt#sha256={sha}",
        }
    )  # keyed by the URL's basename
    raw = tmp_path / "raw"
    summary = fetch_dataset("voc", raw, cfg, progress=False, backoff_s=0)

    root = raw / "voc" / "VOCdevkit" / "VOC2012"
    assert (root / "JPEGImages" / "2007_000032.jpg").read_bytes() == b"jpeg"
    assert (root / "SegmentationClassAug" / "2007_000039.png").read_bytes() == b"aug39"
    assert (
        root / "ImageSets" / "Segmentation" / "train_aug.txt"
    ).read_text() == "2007_000032\n2007_000039\n"
    assert is_complete("voc", raw) and (raw / "voc" / COMPLETE_MARKER).exists()
    assert not (raw / "voc" / ".staging").exists()
    assert sorted(p.name for p in (raw / ".downloads").iterdir()) == [
        "SegmentationClassAug.zip",
        "VOCtrainval_11-May-2012.tar",
        "train_aug.txt",
    ]
    total = sum(len(b) for b in server.files.values())
    assert summary["files"] == 3 and summary["bytes"] == total and summary["unverified_files"] == 1
    assert not summary["already_complete"]

    n_requests = len(server.requests)
    again = fetch_dataset("voc", raw, cfg, progress=False)
    assert again["already_complete"] and again["bytes"] == 0 and len(server.requests) == n_requests


def test_fetch_voc_refuses_a_corrupt_unpinned_zip(server, tmp_path):
    server.files["/voc.tar"] = _tar_bytes({"VOCdevkit/VOC2012/JPEGImages/a.jpg": b"x"})
    server.files["/sbd.zip"] = b"<html>Dropbox needs you to sign in</html>"
    cfg = _cfg(
        {
            "VOCtrainval_11-May-2012.tar": f"{server.url}/voc.tar",  # keeps the real md5: mismatch
            "SegmentationClassAug.zip": f"{server.url}/sbd.zip",
        }
    )
    with pytest.raises(ChecksumMismatch, match="6cd6e144f989b92b3379bac3b3de84fd"):
        fetch_dataset("voc", tmp_path, cfg, progress=False)
    md5 = hashlib.md5(server.files["/voc.tar"]).hexdigest()
    cfg.base_urls["VOCtrainval_11-May-2012.tar"] += f"#md5={md5}"
    with pytest.raises(DataError, match="SegmentationClassAug.zip: corrupt or truncated archive"):
        fetch_dataset("voc", tmp_path, cfg, progress=False)
    assert not (tmp_path / ".downloads" / "SegmentationClassAug.zip").exists()
    assert not is_complete("voc", tmp_path)


def test_fetch_weights_downloads_and_checks_the_checkpoint(server, tmp_path):
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"conv1.weight": torch.zeros(2, 3)}, buf)
    server.files["/r101.pth"] = buf.getvalue()
    prefix = hashlib.sha256(buf.getvalue()).hexdigest()[:8]  # torchvision-style prefix pin
    cfg = _cfg({"resnet101-63fe2227.pth": f"{server.url}/r101.pth#sha256={prefix}"})
    summary = fetch_weights(["resnet101"], tmp_path / "weights", cfg, progress=False)
    assert (tmp_path / "weights" / "resnet101-imagenet.pth").read_bytes() == buf.getvalue()
    assert summary["files"] == 1 and summary["bytes"] == len(buf.getvalue())

    server.files["/bad.pth"] = b"not a checkpoint"
    bad_md5 = hashlib.md5(b"not a checkpoint").hexdigest()
    cfg = _cfg({"resnet50-imagenet.pth": f"{server.url}/bad.pth#md5={bad_md5}"})
    with pytest.raises(DataError, match="not a PyTorch checkpoint"):
        fetch_weights(["resnet50"], tmp_path / "weights", cfg, progress=False)
    assert not (tmp_path / "weights" / "resnet50-imagenet.pth").exists()


def test_resnet38_is_placed_by_hand(tmp_path):
    torch = pytest.importorskip("torch")
    weights = tmp_path / "data" / "weights"
    with pytest.raises(ManualDownloadRequired) as err:
        fetch_weights(["resnet38"], weights, _cfg({}))
    assert str(weights / "resnet38_dict.pth") in str(err.value)
    weights.mkdir(parents=True)
    (weights / "resnet38_dict.pth").write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="resnet38_dict.pth: not a PyTorch checkpoint"):
        fetch_weights(["resnet38"], weights, _cfg({}))
    torch.save(
        {"w": torch.ones(1)}, weights / "resnet38_dict.pth", _use_new_zipfile_serialization=False
    )
    assert (
        fetch_weights(["resnet38"], weights, _cfg({}))["files"] == 1
    )  # legacy pickle format passes


def test_vispr_is_checked_not_downloaded(tmp_path):
    root = tmp_path / "vispr"
    with pytest.raises(ManualDownloadRequired) as err:
        fetch_dataset("vispr", tmp_path, _cfg({}), splits=["train2017"])
    assert "tribhuvanesh.github.io/vpa" in str(err.value) and str(root / "attributes.tsv") in str(
        err.value
    )
    for rel in (
        "attributes.tsv",
        "user_studies/user_profiles.tsv",
        "train2017.txt",
        "annotations/train2017/1.json",
        "images/train2017/1.jpg",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    assert fetch_dataset("vispr", tmp_path, _cfg({}), splits=["train2017"])["files"] == 5
    with pytest.raises(ManualDownloadRequired, match="val2017.txt"):
        fetch_dataset("vispr", tmp_path, _cfg({}))  # the official splits by default
