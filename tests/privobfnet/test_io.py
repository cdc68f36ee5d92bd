"""Atomic writes: whole or not at all, with the mode the umask gives; the digests."""

from __future__ import annotations

import os
import stat

import pytest

from privobfnet.io import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    current_umask,
    file_digest,
    json_digest,
)


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_open_would_give_them(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "a.json", "{}\n")
    atomic_write_bytes(tmp_path / "sub" / "b.png", b"\x89PNG")
    with atomic_path(tmp_path / "c.bin") as tmp:
        tmp.write_bytes(b"x")
    with open(tmp_path / "plain", "w"):
        pass
    assert mode(tmp_path / "plain") == expected  # what a plain open() gives, for reference
    assert [mode(tmp_path / n) for n in ("a.json", "sub/b.png", "c.bin")] == [expected] * 3


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "metrics.json"
    ]


def test_a_folder_is_replaced_whole_with_the_umasks_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "synthpriv"
    with atomic_dir(target) as tmp:
        (tmp / "one.txt").write_text("1")
    assert mode(target) == 0o755 and (target / "one.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "two.txt").write_text("2")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["one.txt"]  # the old folder, untouched
    with atomic_dir(target) as tmp:
        (tmp / "two.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["two.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthpriv"]  # no leftovers


def test_digests(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert file_digest(tmp_path / "f") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    )
    assert file_digest(tmp_path / "f", "md5") == "900150983cd24fb0d6963f7d28e17f72"
    assert json_digest({"a": 1, "b": [2]}) == json_digest({"b": [2], "a": 1})
    assert json_digest({"a": 1}) != json_digest({"a": 2}) and len(json_digest({}, 12)) == 12
