"""Safe unpacking of tar, zip, wheel and .deb archives.

A member that would land outside the target folder (``../``, an absolute path, a link that
points out) is refused, naming the archive and the member: downloaded archives are input we do
not control.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")
ZIP_SUFFIXES = (".zip", ".whl")


class UnsafeArchiveError(ValueError):
    """An archive member that would be written outside the target folder."""


def archive_stem(name: str) -> str | None:
    """``corpus.tar.gz`` → ``corpus``; None when the name is not an archive we unpack."""
    lower = name.lower()
    for suffix in TAR_SUFFIXES + ZIP_SUFFIXES + (".deb",):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _inside(root: Path, member: str) -> bool:
    target = (root / member).resolve()
    return target == root or root in target.parents


def _check_member(archive: Path, root: Path, name: str) -> None:
    if os.path.isabs(name) or name.startswith(("/", "\\")) or not _inside(root, name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside {root}")


def _link_target(member_name: str, linkname: str, symbolic: bool) -> str:
    """Where a link points, relative to the archive root (symlinks are relative to their folder)."""
    base = os.path.dirname(member_name) if symbolic else ""
    return os.path.join(base, linkname)


def extract_tar(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Unpack a tar archive into ``dest``, refusing unsafe members before writing any."""
    archive, root = Path(archive), Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode="r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(archive, root, member.name)
            if member.issym() or member.islnk():
                target = _link_target(member.name, member.linkname, member.issym())
                if os.path.isabs(member.linkname) or not _inside(root, target):
                    raise UnsafeArchiveError(
                        f"{archive}: link {member.name!r} -> {member.linkname!r} points outside {root}"
                    )
        # The "data" filter repeats these checks and also refuses device files and odd modes.
        tar.extractall(root, members=members, filter="data")


def extract_zip(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Unpack a zip (or wheel) into ``dest``, refusing unsafe members before writing any."""
    archive, root = Path(archive), Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _check_member(archive, root, info.filename)
            if _is_zip_symlink(info):
                target = zf.read(info).decode("utf-8", "replace")
                if os.path.isabs(target) or not _inside(root, _link_target(info.filename, target, True)):
                    raise UnsafeArchiveError(f"{archive}: link {info.filename!r} -> {target!r} points outside {root}")
        zf.extractall(root)


def _is_zip_symlink(info: zipfile.ZipInfo) -> bool:
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def extract_member(archive: str | os.PathLike[str], member: str, dest: str | os.PathLike[str]) -> Path:
    """Copy one named member of a zip/wheel to the file ``dest``; a clear error if it is absent."""
    archive, dest = Path(archive), Path(dest)
    with zipfile.ZipFile(archive) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise FileNotFoundError(f"{archive}: has no member {member!r}") from None
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    return dest


def extract_deb(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Unpack a .deb's file tree (``dpkg-deb --fsys-tarfile``) through the safe tar extractor."""
    archive = Path(archive)
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "data.tar"
        with open(tar_path, "wb") as out:
            result = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=out, stderr=subprocess.PIPE)
        if result.returncode != 0:
            raise ValueError(f"{archive}: not a valid .deb: {result.stderr.decode(errors='replace').strip()}")
        extract_tar(tar_path, dest)


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Unpack any supported archive by its file name."""
    name = Path(archive).name.lower()
    if name.endswith(".deb"):
        extract_deb(archive, dest)
    elif name.endswith(ZIP_SUFFIXES):
        extract_zip(archive, dest)
    elif name.endswith(TAR_SUFFIXES):
        extract_tar(archive, dest)
    else:
        raise ValueError(f"{archive}: not an archive Polyforge unpacks ({', '.join(TAR_SUFFIXES + ZIP_SUFFIXES)}, .deb)")
