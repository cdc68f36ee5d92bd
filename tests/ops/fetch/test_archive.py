"""ops.fetch.archive: safe extraction of tar/zip archives and the integrity checks."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from ops.fetch.archive import EXTRACT_MARKER, check_archive, check_id_list, safe_extract
from privobfnet.data.errors import DataError


def _member(name, kind=tarfile.REGTYPE, data=b"", linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data)
    return info, data


def _write_tar(path: Path, members, mode="w") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


@pytest.fixture
def sandbox(tmp_path):
    """tmp_path/out is target's parent; tmp_path/outside.txt must survive every attack."""
    (tmp_path / "outside.txt").write_text("keep")
    (tmp_path / "out").mkdir()
    return tmp_path


def _assert_nothing_escaped(sandbox: Path, target: Path) -> None:
    assert (sandbox / "outside.txt").read_text() == "keep"
    assert not target.exists()
    assert list((sandbox / "out").iterdir()) == []  # no partial folder left beside the target
    assert [p.name for p in sandbox.rglob("evil*")] == []


def test_good_tar_gz_is_extracted_once(tmp_path):
    archive = _write_tar(
        tmp_path / "good.tar.gz",
        [
            _member("top/a.txt", data=b"hello"),
            _member("top/link", tarfile.SYMTYPE, linkname="a.txt"),
            _member("top/hard", tarfile.LNKTYPE, linkname="top/a.txt"),
        ],
        mode="w:gz",
    )
    target = safe_extract(archive, tmp_path / "target")
    assert (target / "top" / "link").read_text() == "hello" and (
        target / "top" / "hard"
    ).read_text() == "hello"
    assert (target / EXTRACT_MARKER).exists()
    archive.unlink()  # the marker makes a second call a no-op
    assert safe_extract(archive, tmp_path / "target") == target


def test_good_zip_is_extracted(tmp_path):
    with zipfile.ZipFile(tmp_path / "good.zip", "w") as zf:
        zf.writestr("SegmentationClassAug/2007_000032.png", b"png")
    target = safe_extract(tmp_path / "good.zip", tmp_path / "t")
    assert (target / "SegmentationClassAug" / "2007_000032.png").read_bytes() == b"png"


@pytest.mark.parametrize(
    "members, culprit, why",
    [
        ([_member("../evil.txt", data=b"x")], "../evil.txt", "'..'"),
        ([_member("ok/../../evil.txt", data=b"x")], "ok/../../evil.txt", "'..'"),
        ([_member("/tmp/evil_abs.txt", data=b"x")], "/tmp/evil_abs.txt", "absolute"),
        (
            [_member("evil_link", tarfile.SYMTYPE, linkname="../../outside.txt")],
            "evil_link",
            "symbolic link",
        ),
        (
            [_member("evil_link", tarfile.SYMTYPE, linkname="/etc/passwd")],
            "evil_link",
            "symbolic link",
        ),
        (
            [_member("evil_hard", tarfile.LNKTYPE, linkname="../../outside.txt")],
            "evil_hard",
            "hard link",
        ),
        ([_member("evil_dev", tarfile.CHRTYPE)], "evil_dev", "device"),
        # `a` -> x/.. looks inside, but x -> . makes it target/.., and a/evil.txt would land outside
        (
            [
                _member("x", tarfile.SYMTYPE, linkname="."),
                _member("a", tarfile.SYMTYPE, linkname="x/.."),
                _member("a/evil.txt", data=b"x"),
            ],
            "'a'",
            "link",
        ),
    ],
)
def test_malicious_tar_is_refused(sandbox, members, culprit, why):
    archive = _write_tar(sandbox / "bad.tar", members)
    target = sandbox / "out" / "target"
    with pytest.raises(DataError) as err:
        safe_extract(archive, target)
    message = str(err.value)
    assert "bad.tar" in message and culprit in message and why in message
    _assert_nothing_escaped(sandbox, target)


def test_link_made_dangerous_by_a_later_member_is_refused(sandbox):
    # `a` -> x/.. is inside while x does not exist; x -> . (added after) turns `a` into target/..
    archive = _write_tar(
        sandbox / "bad.tar",
        [
            _member("a", tarfile.SYMTYPE, linkname="x/.."),
            _member("x", tarfile.SYMTYPE, linkname="."),
        ],
    )
    target = sandbox / "out" / "target"
    with pytest.raises(DataError, match="symbolic link leaves the target"):
        safe_extract(archive, target)
    _assert_nothing_escaped(sandbox, target)


@pytest.mark.parametrize("name", ["../evil.txt", "/evil_abs.txt"])
def test_malicious_zip_is_refused(sandbox, name):
    with zipfile.ZipFile(sandbox / "bad.zip", "w") as zf:
        zf.writestr("fine.txt", b"ok")
        zf.writestr(zipfile.ZipInfo(name), b"x")
    target = sandbox / "out" / "target"
    with pytest.raises(DataError) as err:
        safe_extract(sandbox / "bad.zip", target)
    assert "bad.zip" in str(err.value) and name in str(err.value)
    _assert_nothing_escaped(sandbox, target)


def _truncate(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _big_tar(path: Path, mode: str = "w") -> Path:
    payload = bytes(range(256)) * 400  # ~100 KB, poorly compressible enough to truncate mid-stream
    return _write_tar(
        path, [_member("d/one.bin", data=payload), _member("d/two.bin", data=payload)], mode
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda p: _truncate(_big_tar(p / "a.tar"), 50_000),  # cut inside a member
        lambda p: _truncate(
            _big_tar(p / "a.tar"), 512 + 102_400
        ),  # cut exactly after the first member
        lambda p: _truncate(_big_tar(p / "a.tar.gz", "w:gz"), 300),
    ],
    ids=["tar-mid-member", "tar-at-boundary", "tar.gz"],
)
def test_truncated_tar_is_refused_and_leaves_nothing(sandbox, make):
    archive = make(sandbox)
    target = sandbox / "out" / "target"
    with pytest.raises(DataError, match=f"{archive.name}: corrupt or truncated archive"):
        safe_extract(archive, target)
    _assert_nothing_escaped(sandbox, target)
    with pytest.raises(DataError, match="corrupt or truncated"):
        check_archive(archive)


def test_truncated_and_corrupt_zip_are_refused(sandbox):
    with zipfile.ZipFile(sandbox / "a.zip", "w") as zf:
        zf.writestr("one.bin", bytes(range(256)) * 100)
    good = (sandbox / "a.zip").read_bytes()
    _truncate(sandbox / "a.zip", len(good) // 2)
    target = sandbox / "out" / "target"
    with pytest.raises(DataError, match="a.zip: corrupt or truncated archive"):
        safe_extract(sandbox / "a.zip", target)
    _assert_nothing_escaped(sandbox, target)
    flipped = bytearray(good)
    flipped[100] ^= 0xFF  # inside the stored data: the CRC no longer matches
    (sandbox / "a.zip").write_bytes(bytes(flipped))
    with pytest.raises(DataError, match="corrupt or truncated"):
        check_archive(sandbox / "a.zip")
    with pytest.raises(DataError, match="corrupt or truncated"):
        safe_extract(sandbox / "a.zip", target)
    _assert_nothing_escaped(sandbox, target)


def test_foreign_folder_at_the_target_is_not_taken_for_a_finished_extraction(tmp_path):
    _write_tar(tmp_path / "a.tar", [_member("f.txt", data=b"x")])
    (tmp_path / "target").mkdir()
    with pytest.raises(DataError, match="no completed extraction"):
        safe_extract(tmp_path / "a.tar", tmp_path / "target")


def test_id_list_check(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("2007_000032\n2011_003276\n")
    check_id_list(good)
    bad = tmp_path / "bad.txt"
    bad.write_text("2007_000032\n<!DOCTYPE html>\n")
    with pytest.raises(DataError, match=r"bad.txt: not a VOC image-id list: line 2"):
        check_id_list(bad)
