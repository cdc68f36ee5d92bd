"""Safe archive extraction and integrity checks for files that have no published checksum.

``safe_extract`` refuses any member that could write outside its target (absolute paths, '..'
components, links leading out, device files) and any corrupt or truncated archive, and never
leaves a half-extracted folder that looks finished. The ``check_*`` functions are the integrity
checks the downloader runs when no checksum is known; all raise ``DataError`` naming the file.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import pickle
import posixpath
import re
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterator

from privobfnet.data.errors import DataError
from privobfnet.io import atomic_dir

EXTRACT_MARKER = ".extract-complete"
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CORRUPT = (
    tarfile.ReadError,
    tarfile.CompressionError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    gzip.BadGzipFile,
)
# Python >= 3.11.4 resolves links at extraction time too (PEP 706); older 3.11 rely on our checks alone
_DATA_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_FILTER_ERROR = getattr(tarfile, "FilterError", ())
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a pre-1.6 torch.save file


# ------------------------------------------------------------------------------------------
def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a tar (any compression) or zip into ``target``, refusing members that could escape it.

    Members are extracted into a temporary folder beside ``target`` that is renamed into place
    only when complete, with ``target/.extract-complete`` inside; an existing marker skips the
    work. Unsafe members and corrupt or truncated archives raise DataError naming both.
    """
    archive, target = Path(archive), Path(target)
    if (target / EXTRACT_MARKER).exists():
        return target
    if target.exists():
        raise DataError(
            target,
            "exists but holds no completed extraction",
            f"remove it to extract {archive.name} again",
        )
    with atomic_dir(target) as tmp:  # a killed extraction leaves no half-filled target
        extract = _extract_zip if _is_zip(archive) else _extract_tar
        count = extract(archive, tmp)
        (tmp / EXTRACT_MARKER).write_text(
            json.dumps({"archive": archive.name, "members": count}) + "\n"
        )
    return target


def _is_zip(archive: Path) -> bool:
    name = archive.name.lower()
    if name.endswith(".zip") or name.endswith(_TAR_SUFFIXES):
        return name.endswith(".zip")
    return zipfile.is_zipfile(archive)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _unsafe(archive: Path, member: str, why: str) -> DataError:
    return DataError(archive, "unsafe archive member", f"{member!r}: {why}")


def _check_name(archive: Path, name: str) -> str:
    """The member's relative POSIX path; absolute paths and '..' components are refused."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise _unsafe(archive, name, "absolute path")
    if ".." in parts:
        raise _unsafe(archive, name, "'..' path component")
    return "/".join(parts)


def _escapes(base_dir: str, link: str) -> bool:
    return (
        link.startswith("/")
        or posixpath.normpath(posixpath.join(base_dir, link)).split("/")[0] == ".."
    )


def _tar_members(
    tar: tarfile.TarFile, archive: Path, dest: Path, counter: list[int]
) -> Iterator[tarfile.TarInfo]:
    root = os.path.realpath(dest)
    for member in tar:
        name = _check_name(archive, member.name)
        if member.isdev() or member.isfifo():
            raise _unsafe(archive, member.name, "device or special file")
        if member.issym() and _escapes(posixpath.dirname(name), member.linkname):
            raise _unsafe(
                archive, member.name, f"symbolic link to {member.linkname!r} leaves the target"
            )
        if member.islnk() and (
            _escapes("", member.linkname)
            or not _inside(os.path.realpath(dest / member.linkname), root)
        ):
            raise _unsafe(
                archive, member.name, f"hard link to {member.linkname!r} leaves the target"
            )
        # a path through an already extracted symbolic link must not lead outside either
        if not _inside(os.path.realpath(dest / name), root):
            raise _unsafe(
                archive, member.name, "its path runs through a symbolic link out of the target"
            )
        counter[0] += 1
        yield member


def _extract_tar(archive: Path, dest: Path) -> int:
    counter = [0]
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, members=_tar_members(tar, archive, dest, counter), **_DATA_FILTER)
            if not isinstance(tar.fileobj, (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile)):
                # a plain tar cut at a member boundary reads as a shorter, valid one: need the end marker
                tar.fileobj.seek(tar.offset)
                if tar.fileobj.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
                    raise tarfile.ReadError(f"no end-of-archive marker after {counter[0]} members")
    except _FILTER_ERROR as exc:
        raise _unsafe(archive, exc.tarinfo.name, str(exc)) from None
    except _CORRUPT as exc:
        raise DataError(archive, "corrupt or truncated archive", str(exc)) from None
    root = os.path.realpath(dest)
    for path in dest.rglob("*"):  # a link may point through another one extracted after it
        if path.is_symlink() and not _inside(os.path.realpath(path), root):
            raise _unsafe(archive, str(path.relative_to(dest)), "symbolic link leaves the target")
    return counter[0]


def _extract_zip(archive: Path, dest: Path) -> int:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:  # check all before writing anything
                name = _check_name(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                    raise _unsafe(archive, info.filename, "device or special file")
                if stat.S_ISLNK(mode) and _escapes(
                    posixpath.dirname(name), zf.read(info).decode(errors="replace")
                ):
                    raise _unsafe(archive, info.filename, "symbolic link leaves the target")
            for info in infos:  # zipfile writes links as plain files and checks each CRC
                zf.extract(info, dest)
    except _CORRUPT as exc:
        raise DataError(archive, "corrupt or truncated archive", str(exc)) from None
    return len(infos)


def check_archive(path: str | os.PathLike) -> None:
    """Read every member of a zip or tar (CRCs, compression streams); raises DataError."""
    path = Path(path)
    try:
        if _is_zip(path):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            if bad is not None:
                raise DataError(path, "corrupt or truncated archive", f"bad CRC in member {bad!r}")
            return
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            _extract_tar(path, Path(tmp))
    except _CORRUPT as exc:
        raise DataError(path, "corrupt or truncated archive", str(exc)) from None


def check_id_list(path: str | os.PathLike) -> None:
    """Check a VOC image-id list (one ``YYYY_NNNNNN`` per line); raises DataError."""
    lines = [
        ln.strip() for ln in Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    ]
    ids = [ln for ln in lines if ln]
    if not ids:
        raise DataError(path, "not a VOC image-id list", "no ids")
    for number, line in enumerate(lines, 1):
        if line and not re.fullmatch(r"\d{4}_\d{6}", line):
            raise DataError(path, "not a VOC image-id list", f"line {number}: {line[:60]!r}")


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):  # never import anything from an untrusted file
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def check_checkpoint(path: str | os.PathLike) -> None:
    """Check that a file is a PyTorch checkpoint (zip with data.pkl, or legacy pickle) without unpickling it."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in zf.namelist()):
                raise DataError(path, "not a PyTorch checkpoint", "zip file without data.pkl")
            bad = zf.testzip()
        if bad is not None:
            raise DataError(path, "not a PyTorch checkpoint", f"corrupt zip member {bad!r}")
        return
    try:
        with open(path, "rb") as fh:
            magic = _NoGlobals(fh).load()
    except Exception as exc:  # any failure means "not a pickle"
        raise DataError(
            path, "not a PyTorch checkpoint", f"neither a zip nor a pickle file ({exc})"
        ) from None
    if magic != _TORCH_LEGACY_MAGIC:
        raise DataError(path, "not a PyTorch checkpoint", "a pickle without torch's magic number")


INTEGRITY_CHECKS = {
    "archive": check_archive,
    "id_list": check_id_list,
    "checkpoint": check_checkpoint,
}

__all__ = [
    "EXTRACT_MARKER",
    "INTEGRITY_CHECKS",
    "check_archive",
    "check_checkpoint",
    "check_id_list",
    "safe_extract",
]
