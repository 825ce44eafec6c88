"""Download, verify, cache and safely extract data set archives (`untar_data`).

The cache lives under `groundup.utils.paths.groundup_home()` (`$GROUNDUP_HOME` or `~/.groundup`):

    <home>/archives/imagenette2-160-<hash>.tgz      the verified archive (kept, so re-extracting is offline)
    <home>/archives/imagenette2-160-<hash>.tgz.part an unfinished download; the next call resumes it
    <home>/data/imagenette-160/imagenette2-160      the extracted folder `untar_data` returns (a registry name)
    <home>/data/tiny-<hash>/tiny                    the same for a url passed directly

The cache is keyed by the full url (`<hash>`: 8 hex digits of its sha256), never by its file name
alone: `.../v1/data.tgz` and `.../v2/data.tgz` are two archives. The extracted folder records the
url and the size, md5 and sha256 of the archive it came from (`.groundup-archive.json`), so a
checksum given later is checked against what is cached, not assumed.

Every step is atomic: bytes go to a `.part` file that is renamed only once its size and
checksum are verified (and, without a whole-file checksum, once the archive has been read to
its end: a server that sends no length cannot otherwise tell a cut-off transfer from a whole
one), and an archive is extracted into a temporary sibling folder that is renamed into place
only when complete. A half-finished download or extraction therefore never looks finished,
and a lock file keeps two processes from downloading the same file at once.

Example:
    >>> path = untar_data("imagenette-160")          # doctest: +SKIP
    >>> sorted(p.name for p in path.iterdir())       # doctest: +SKIP
    ['noisy_imagenette.csv', 'train', 'val']
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from filelock import FileLock
from tqdm.auto import tqdm

from groundup._version import __version__
from groundup.data.class_names import IMAGENETTE_CLASS_NAMES, IMAGEWOOF_CLASS_NAMES
from groundup.utils.disk import DiskFullError, format_size, free_space, is_disk_full
from groundup.utils.errors import GroundupError
from groundup.utils.paths import groundup_home, home_folder

__all__ = [
    "DATASETS",
    "SHIPPED_DATASET",
    "Archive",
    "ChecksumError",
    "DownloadError",
    "UnsafeArchiveError",
    "extract_archive",
    "list_datasets",
    "registry_class_names",
    "shipped_dataset",
    "untar_data",
]

_CHUNK = 1 << 20  # read and hash 1 MiB at a time
_ATTEMPTS = 3  # a transfer cut off midway is resumed (HTTP Range) up to this many times in one call


@dataclass(frozen=True)
class Archive:
    """A downloadable archive and what we know about it, to check the download against.

    Args:
        name: the short name `untar_data` accepts; also the folder under `<home>/data/`.
        url: where to download it (http or https).
        size: the archive's size in bytes, or None if unknown.
        md5: hex md5 of the whole archive, or None.
        head_md5: hex md5 of the archive's first MiB (2**20 bytes), or None. This is the
            check fastai publishes in its `checks.txt`; it catches a wrong or changed file
            cheaply but, unlike `md5`/`sha256`, not corruption after the first MiB.
        sha256: hex sha256 of the whole archive, or None.
        class_names: `{class folder: human-readable name}` (e.g. `{"n01440764": "tench"}`), or None.
    """

    name: str
    url: str
    size: int | None = None
    md5: str | None = None
    head_md5: str | None = None
    sha256: str | None = None
    class_names: dict[str, str] | None = field(default=None, hash=False, compare=False, repr=False)

    @property
    def filename(self) -> str:
        """The archive's file name under `<home>/archives/`: the url's file name with the url's hash in it."""
        name = _url_filename(self.url)
        stem = _strip_archive_suffix(name)
        return f"{stem}-{_url_hash(self.url)}{name[len(stem):]}"


_FASTAI_IMAGECLAS = "https://s3.amazonaws.com/fast-ai-imageclas"

# Sizes and head_md5 values are those fastai publishes for these urls in `fastai/data/checks.txt`;
# the whole-file md5 values are those torchvision's `Imagenette` data set checks.
DATASETS: dict[str, Archive] = {
    archive.name: archive
    for archive in [
        Archive(
            "imagenette-160",
            f"{_FASTAI_IMAGECLAS}/imagenette2-160.tgz",
            size=99_003_388,
            md5="e793b78cc4c9e9a4ccc0c1155377a412",
            head_md5="c475f8f7617a200ba35b9facc48443c3",
            class_names=IMAGENETTE_CLASS_NAMES,
        ),
        Archive(
            "imagenette-320",
            f"{_FASTAI_IMAGECLAS}/imagenette2-320.tgz",
            size=341_663_724,
            md5="3df6f0d01a2c9592104656642f5e78a3",
            head_md5="1f1f74f133caff120e575856659b87a2",
            class_names=IMAGENETTE_CLASS_NAMES,
        ),
        Archive(
            "imagewoof-160",
            f"{_FASTAI_IMAGECLAS}/imagewoof2-160.tgz",
            size=92_612_825,
            head_md5="3559b194123981a540b87132dbda412f",
            class_names=IMAGEWOOF_CLASS_NAMES,
        ),
        Archive(
            "imagewoof-320",
            f"{_FASTAI_IMAGECLAS}/imagewoof2-320.tgz",
            size=328_387_740,
            head_md5="7a1fd92672a559a85de76e4810a20c21",
            class_names=IMAGEWOOF_CLASS_NAMES,
        ),
    ]
}


class DownloadError(GroundupError, OSError):
    """A download failed: the network, the server, or the received file was wrong."""

    url: str | None = None  # set for a network failure, with `reason`
    reason: object = None

    def with_offline_hint(self, offline: str) -> DownloadError:
        """This error with another suggestion for working offline (e.g. naming a command-line option)."""
        return self if self.url is None else _network_error(self.url, self.reason, offline)


class ChecksumError(DownloadError):
    """A downloaded file's size or checksum differs from the expected one (the file is removed)."""


class UnsafeArchiveError(GroundupError, ValueError):
    """An archive member would be written outside the destination, or is a link or device."""


SHIPPED_DATASET = "imagenette-mini"


def shipped_dataset() -> Path:
    """The small data set inside the package: imagenette-mini (10 classes, 600 train + 200 val 64-px JPEGs).

    `untar_data("imagenette-mini")` and `--data imagenette-mini` return this folder; nothing is downloaded.
    """
    import groundup.datasets

    return Path(groundup.datasets.__file__).parent / SHIPPED_DATASET


def registry_class_names() -> dict[str, str]:
    """`{class folder: human-readable name}` over every registry data set (WordNet ids are unique)."""
    return {folder: name for archive in DATASETS.values()
            for folder, name in (archive.class_names or {}).items()}


def list_datasets() -> list[Archive]:
    """The named archives `untar_data` knows, sorted by name (what `groundup download --list` shows)."""
    return [DATASETS[name] for name in sorted(DATASETS)]


def untar_data(
    name_or_url: str,
    dest: str | Path | None = None,
    *,
    progress: bool | None = None,
    size: int | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download an archive (once), extract it (once) and return the folder of its data.

    Args:
        name_or_url: `"imagenette-mini"` (shipped inside the package: returned at once), a name
            from `DATASETS` (`"imagenette-160"`), an http(s) url, or a local
            archive file or folder (a folder is returned as it is; nothing is downloaded).
        dest: the folder to extract into; default `<home>/data/<name>`.
        progress: show a progress bar while downloading? None: only on a terminal.
        size, md5, sha256: what the archive must match; how a url passed directly gets
            verified. Given with a registered name, they replace all of its registry checks.
        timeout: seconds to wait for the server before giving up.

    Returns:
        The archive's single top-level folder inside `dest` (`.../imagenette2-160`) when it has
        one, else `dest` itself. A second call finds it and does no network work at all.

    Raises:
        ValueError: `name_or_url` is neither a known name, a url nor an existing path.
        DownloadError: the server could not be reached or answered with an error.
        ChecksumError: the download's size or checksum is wrong (the bad file is removed).
        UnsafeArchiveError: a member would escape `dest`, or is a link or device file.
    """
    if name_or_url == SHIPPED_DATASET:
        return shipped_dataset()  # inside the package: no download, no copy
    local = Path(name_or_url).expanduser()
    if name_or_url not in DATASETS and not _is_url(name_or_url) and local.exists():
        if local.is_dir():
            return local
        dest = (
            Path(dest).expanduser()
            if dest is not None
            else groundup_home() / "data" / _strip_archive_suffix(local.name)
        )
        if not _is_finished(dest):
            with _locked(dest.with_name(dest.name + ".lock")):
                if not _is_finished(dest):
                    extract_archive(local, dest)
        return _data_root(dest)

    archive = _resolve(name_or_url)
    checked = (size, md5, sha256) != (None, None, None)
    if checked:  # the caller's checks replace the registry's
        archive = Archive(archive.name, archive.url, size=size, md5=md5, sha256=sha256)
    dest = Path(dest).expanduser() if dest is not None else groundup_home() / "data" / archive.name
    archive_path = groundup_home() / "archives" / archive.filename
    if _is_finished(dest) and (not checked or _matches(dest, archive, archive_path)):
        return _data_root(dest)  # the common case: no lock, no network
    home_folder("archives")  # a read-only GROUNDUP_HOME is an error naming it, not a raw errno
    # One lock per archive file: a second process waits here, then finds the work done.
    with _locked(archive_path.with_name(archive_path.name + ".lock")):
        finished = _is_finished(dest)
        if not finished or (checked and not _matches(dest, archive, archive_path)):
            digests = _download_if_needed(archive, archive_path, progress=progress, timeout=timeout)
            _extract_download(archive, archive_path, dest, digests, replace=finished)
    return _data_root(dest)


def extract_archive(archive_path: str | Path, dest: str | Path, *, record: dict | None = None,
                    replace: bool = False) -> Path:
    """Safely extract a tar (.tgz, .tar.gz, .tar.bz2, .tar.xz, .tar) or zip archive into `dest`.

    Only regular files and folders are extracted; a member with an absolute path or one that
    would land outside `dest` (`../evil`), a symlink, a hard link or a device file raises
    `UnsafeArchiveError` naming it. Members go into a temporary sibling of `dest` that is
    renamed to `dest` only when everything was extracted, so on any error nothing is left at
    `dest`. If `dest` already holds files (another process finished first), those are kept,
    unless `replace`: then the new folder takes the old one's place.

    Args:
        archive_path: the archive.
        dest: the folder to extract into.
        record: written into the folder as `.groundup-archive.json` (where the archive came
            from and its checksums), in the same atomic step.
        replace: put the extracted folder in place of a finished `dest`.

    Returns:
        `dest`, as a Path.
    """
    archive_path, dest = Path(archive_path), Path(dest).expanduser()
    if not archive_path.is_file():
        raise FileNotFoundError(f"archive not found: {archive_path}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.extracting-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        if zipfile.is_zipfile(archive_path):
            _extract_zip(archive_path, tmp)
        elif tarfile.is_tarfile(archive_path):
            _extract_tar(archive_path, tmp)
        else:
            raise ValueError(
                f"{archive_path} is neither a tar nor a zip archive; if it was downloaded, "
                "delete it and try again (a server may have sent an error page)"
            )
        if record is not None:
            (tmp / _RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()  # an empty folder someone made for us: replace it
        if replace and dest.exists():
            old = dest.with_name(f".{dest.name}.replaced-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
            return dest
        try:
            tmp.rename(dest)
        except OSError:
            if not _is_finished(dest):
                raise
            # Another process renamed its complete copy into place first; keep that one.
    except OSError as e:
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            free = free_space(dest.parent)
            have = f"{format_size(free)} free" if free is not None else "the free space is unknown"
            raise DiskFullError(f"no room to extract {archive_path} into {dest}: it unpacks to "
                                f"{format_size(_unpacked_size(archive_path))}, {have} (the partial folder was "
                                f"removed); free some space there, or extract elsewhere (--dest, or "
                                f"untar_data(..., dest=) in Python)") from e
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _unpacked_size(archive_path: Path) -> int:
    """The total size of the files in a zip or tar archive (reads the tar's headers)."""
    if zipfile.is_zipfile(archive_path):
        with zipfile.ZipFile(archive_path) as zf:
            return sum(info.file_size for info in zf.infolist())
    with tarfile.open(archive_path, "r:*") as tar:
        return sum(member.size for member in tar if member.isfile())


# ---------------------------------------------------------------------------------------------
# Resolving names and paths


_RECORD = ".groundup-archive.json"  # in an extracted folder: the archive's url, size, md5 and sha256


def _url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:8]


def _matches(dest: Path, archive: Archive, archive_path: Path) -> bool:
    """Does the folder extracted at `dest` come from an archive with `archive`'s size and checksums?

    Read from the record extraction wrote; a folder without one (extracted by an older groundup)
    is checked through its cached archive, and counts as not matching when that is gone.
    """
    try:
        record = json.loads((dest / _RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        if not archive_path.is_file():
            return False
        record = {"size": archive_path.stat().st_size, **_digests(archive_path, want_head=False)}
    wanted = {"size": archive.size, "md5": archive.md5, "sha256": archive.sha256}
    return all(v is None or str(record.get(k, "")).lower() == str(v).lower() for k, v in wanted.items())


def _extract_download(archive: Archive, archive_path: Path, dest: Path, digests: dict, replace: bool) -> None:
    """Extract a downloaded archive; one that turns out damaged is deleted (it is ours) and named in the error."""
    record = {"url": archive.url, "size": archive_path.stat().st_size, "md5": digests["md5"],
              "sha256": digests["sha256"]}
    try:
        extract_archive(archive_path, dest, record=record, replace=replace)
    except (EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error) as e:
        archive_path.unlink(missing_ok=True)
        raise DownloadError(f"the archive {archive_path} downloaded from {archive.url} is damaged ({_why(e)}); it "
                            f"was deleted: run again to download it afresh") from e


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https")


def _resolve(name_or_url: str) -> Archive:
    """The registry entry for a name, or a new `Archive` for a url."""
    if name_or_url in DATASETS:
        return DATASETS[name_or_url]
    if _is_url(name_or_url):  # named after its file and keyed by the whole url
        return Archive(f"{_strip_archive_suffix(_url_filename(name_or_url))}-{_url_hash(name_or_url)}", name_or_url)
    raise ValueError(
        f"unknown data set {name_or_url!r}: not a registered name, an http(s) url or an existing path; "
        f"registered names: {SHIPPED_DATASET} (shipped), {', '.join(sorted(DATASETS))}"
    )


def _url_filename(url: str) -> str:
    """A safe local file name for `url`: its last path component, odd characters replaced."""
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "download"


def _strip_archive_suffix(filename: str) -> str:
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip"):
        if filename.lower().endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return filename


def _is_finished(dest: Path) -> bool:
    """A non-empty folder at `dest` is finished work: extraction only ever renames complete folders there."""
    return dest.is_dir() and any(dest.iterdir())


def _data_root(dest: Path) -> Path:
    """`dest/<top>` when `dest` holds a single folder (hidden entries aside), else `dest`."""
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def _locked(lock_path: Path) -> FileLock:
    """An exclusive lock on `lock_path` (created if missing) for a `with` block; waits as long as it takes.

    filelock takes an OS lock (`flock`, or `msvcrt.locking` on Windows), which the OS frees if the
    process dies, so a crashed download never leaves the archive locked.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(lock_path, timeout=-1)


# ---------------------------------------------------------------------------------------------
# Downloading and verifying


# What to do offline, as a Python caller of `untar_data` would; the command line names its own options
# instead (`DownloadError.with_offline_hint`).
OFFLINE_HINT = (
    "set GROUNDUP_HOME or pass dest= to where the data already is, or pass a local folder or archive "
    "instead of the name"
)


def _network_error(url: str, reason: object, offline: str = OFFLINE_HINT) -> DownloadError:
    error = DownloadError(
        f"could not download {url}: {reason}. Check the network connection and try again (a partial "
        f"download is resumed); or, offline, {offline}"
    )
    error.url, error.reason = url, reason
    return error


def _download_if_needed(
    archive: Archive, archive_path: Path, *, progress: bool | None, timeout: float
) -> dict[str, str]:
    """Reuse a cached archive that passes the checks, else download it (call with the lock held); its digests."""
    if archive_path.exists():
        try:
            return _verify(archive_path, archive)
        except ChecksumError:
            pass  # the corrupted copy was removed; fetch it afresh
    return _download(archive, archive_path, progress=progress, timeout=timeout)


def _download(archive: Archive, archive_path: Path, *, progress: bool | None, timeout: float) -> dict[str, str]:
    """Fetch `archive.url` into `archive_path` via a `.part` file, resuming it, then verify and rename."""
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    part = archive_path.with_name(archive_path.name + ".part")
    total = None
    for _ in range(_ATTEMPTS):
        have = part.stat().st_size if part.exists() else 0
        if archive.size is not None and have > archive.size:
            part.unlink()  # longer than the real file: it cannot be a prefix of it
            have = 0
        if archive.size is not None and have == archive.size:
            break  # complete already (the last run died before renaming)
        done, start, end, total = _fetch(archive, part, have, progress=progress, timeout=timeout)
        if done:
            break
        if end <= have:  # no progress: another try would end at the same place
            if have and start == 0 and end:  # the server ignored Range: the network advice would be wrong
                raise DownloadError(f"could not download {archive.url}: {_no_progress(have, start, end, total)}")
            raise _network_error(archive.url, _no_progress(have, start, end, total))
    else:
        of = f" of {total:,}" if total is not None else ""
        raise _network_error(archive.url, f"the transfer was cut off {_ATTEMPTS} times ({end:,}{of} bytes arrived)")
    digests = _verify(part, archive)  # raises (and removes the file) on mismatch
    if archive.md5 is None and archive.sha256 is None:  # nothing proves it whole: read it to its end
        broken = _unreadable(part)
        if broken:
            size = part.stat().st_size
            part.unlink()
            raise DownloadError(f"the archive downloaded from {archive.url} is incomplete or damaged "
                                f"({format_size(size)} arrived; {broken}); it was deleted ({part}): run again to "
                                f"download it afresh, or pass md5= or sha256= to have it checked")
    os.replace(part, archive_path)
    return digests


def _no_progress(have: int, start: int, end: int, total: int | None) -> str:
    """Why a request added nothing to the `.part` file, for the error."""
    of = f" of {total:,}" if total is not None else ""
    if have and start == 0 and end:  # asked to continue from `have`, the server sent the file from its start again
        return (f"the transfer was cut off after {end:,}{of} bytes, and the server does not resume (it ignored "
                f"the request to continue from byte {have:,} and started again from the beginning), so every try "
                f"ends at the same place; try again later, or download the file another way and pass its path")
    if end == 0:
        return "the connection closed before any data arrived"
    return f"the connection closed after {end:,}{of} bytes and sent no more"


def _unreadable(path: Path) -> str | None:
    """Why the archive at `path` cannot be read to its end, or None if it can (every member decompressed)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            return f"member {bad!r} is damaged" if bad else None
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    source = tar.extractfile(member)
                    while source is not None and source.read(_CHUNK):
                        pass
        return None
    except (EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error, OSError) as e:
        if isinstance(e, tarfile.ReadError) and "empty file" not in str(e) and not tarfile.is_tarfile(path):
            return "neither a tar nor a zip archive (a server may have sent an error page)"
        return f"it ends early or is damaged: {_why(e)}"


def _fetch(archive: Archive, part: Path, have: int, *, progress: bool | None,
           timeout: float) -> tuple[bool, int, int, int | None]:
    """One HTTP request appending to `part` from byte `have`.

    Returns:
        (the whole body arrived, the byte the body started at (0 if the server ignored Range),
        the size of `part` afterwards, the file's total size if the server said it).
    """
    url = archive.url
    headers = {"User-Agent": f"groundup/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the part file is useless, start over
            part.unlink()
            return False, 0, 0, None
        raise _network_error(url, f"HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _network_error(url, getattr(e, "reason", e)) from e

    with response:
        if have and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                raise _network_error(url, f"asked for bytes from {have}, server sent from {start}")
            mode = "ab"
        else:  # 200: the server ignored Range (or none was sent), so the body is the whole file
            have, mode = 0, "wb"
        start = have
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        if total is not None and archive.size is not None and total != archive.size:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"size mismatch for {url}: expected {archive.size} bytes, the server reports {total}; "
                "nothing was kept. If the published archive changed, pass the url itself to untar_data"
            )
        if total is not None:  # refuse at once what cannot fit, rather than fill the disk first
            free = free_space(part.parent)
            if free is not None and free < total - have:
                raise _no_room(url, part, have, total, free)
        received = have
        # tqdm's disable=None: draw only on a terminal (or in a notebook, as a widget).
        disable = None if progress is None else not progress
        try:
            with (
                open(part, mode) as f,
                tqdm(total=total, initial=have, desc=_url_filename(url), unit="B", unit_scale=True,
                     unit_divisor=1024, disable=disable) as bar,
            ):
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException):
                        return False, start, received, total  # cut off midway: what arrived stays, to be resumed
                    if not chunk:
                        break
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except OSError as e:
            if is_disk_full(e) and not isinstance(e, DiskFullError):  # the disk filled up during the download
                raise _no_room(url, part, part.stat().st_size if part.exists() else 0, total,
                               free_space(part.parent)) from e
            raise
    return total is None or received >= total, start, received, total


def _no_room(url: str, part: Path, have: int, total: int | None, free: int | None) -> DiskFullError:
    """The error for a download that does not fit where it goes: what is kept, what is needed, and the way on."""
    need = f"{format_size(total - have)} more" if total is not None else "more room (its size is unknown)"
    of = f" of {format_size(total)}" if total is not None else ""
    kept = f"the {format_size(have)}{of} that arrived are kept in {part}" if have else f"nothing was kept ({part})"
    room = f"{format_size(free)} free" if free is not None else "the free space is unknown"
    return DiskFullError(f"no room to download {url} into {part.parent}: it needs {need}, {room}; {kept}. Free some "
                         f"space there and run again (the download continues where it stopped), or set "
                         f"GROUNDUP_HOME to a folder on a disk with room")


def _content_range_start(header: str | None) -> int | None:
    """The first byte offset in a `Content-Range: bytes 100-199/200` header, or None."""
    match = re.match(r"\s*bytes\s+(\d+)-", header or "")
    return int(match.group(1)) if match else None


def _verify(path: Path, archive: Archive) -> dict[str, str]:
    """Check `path` against the archive's size and checksums; remove it and raise if any differs; its digests."""
    checks = []
    digests = {}
    actual_size = path.stat().st_size
    if archive.size is not None:
        checks.append(("size", f"{archive.size} bytes", f"{actual_size} bytes", archive.size == actual_size))
    if archive.size is None or archive.size == actual_size:  # hashing a file of the wrong size is pointless
        digests = _digests(path, want_head=archive.head_md5 is not None)
        for kind in ("md5", "head_md5", "sha256"):
            expected = getattr(archive, kind)
            if expected is not None:
                checks.append((kind, expected.lower(), digests[kind], expected.lower() == digests[kind]))
    bad = [(kind, expected, got) for kind, expected, got, ok in checks if not ok]
    if bad:
        path.unlink()
        details = "; ".join(f"{kind} expected {expected}, received {got}" for kind, expected, got in bad)
        raise ChecksumError(
            f"the file downloaded from {archive.url} ({format_size(actual_size)}) is not the expected one: "
            f"{details}. It was removed ({path}); run again to download it afresh. If this keeps happening "
            "the published archive may have changed: pass the url with your own size/md5/sha256, or none"
        )
    return digests


def _digests(path: Path, *, want_head: bool) -> dict[str, str]:
    """md5 and sha256 of the whole file, and the md5 of its first MiB, in one pass."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    head = hashlib.md5() if want_head else None
    with open(path, "rb") as f:
        first = True
        while chunk := f.read(_CHUNK):
            if first and head is not None:
                head.update(chunk[: 1 << 20])  # _CHUNK is one MiB, so the first chunk is the head
            first = False
            md5.update(chunk)
            sha256.update(chunk)
    return {
        "md5": md5.hexdigest(),
        "sha256": sha256.hexdigest(),
        "head_md5": head.hexdigest() if head else "",
    }


# ---------------------------------------------------------------------------------------------
# Safe extraction


def _safe_target(root: Path, member_name: str, archive_path: Path) -> Path | None:
    """Where member `member_name` goes under `root`, or None to skip it (`./`); raises if it escapes."""
    posix = member_name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise UnsafeArchiveError(
            f"refusing to extract {archive_path}: member {member_name!r} has an absolute path"
        )
    parts = [p for p in PurePosixPath(posix).parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(
            f"refusing to extract {archive_path}: member {member_name!r} would land outside the destination"
        )
    return root.joinpath(*parts) if parts else None


def _extract_tar(archive_path: Path, root: Path) -> None:
    with tarfile.open(archive_path, "r:*") as tar:
        for member in tar:
            target = _safe_target(root, member.name, archive_path)
            if member.issym() or member.islnk():
                kind = "a symlink" if member.issym() else "a hard link"
                raise UnsafeArchiveError(
                    f"refusing to extract {archive_path}: member {member.name!r} is {kind} "
                    f"(to {member.linkname!r}); only regular files and folders are extracted"
                )
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(
                    f"refusing to extract {archive_path}: member {member.name!r} is a device or fifo; "
                    "only regular files and folders are extracted"
                )
            if target is None:
                continue
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None  # extractfile returns a reader for every regular file
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
            os.utime(target, (member.mtime, member.mtime))


def _extract_zip(archive_path: Path, root: Path) -> None:
    with zipfile.ZipFile(archive_path) as zf:
        for info in zf.infolist():
            target = _safe_target(root, info.filename, archive_path)
            mode = info.external_attr >> 16  # the Unix mode, where the zip was made on Unix
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(
                    f"refusing to extract {archive_path}: member {info.filename!r} is a symlink; "
                    "only regular files and folders are extracted"
                )
            if target is None:
                continue
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
