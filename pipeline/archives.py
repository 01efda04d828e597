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

from pipeline.arrow_io import atomic_path
from pipeline.errors import PolyforgeError

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")
ZIP_SUFFIXES = (".zip", ".whl")


class UnsafeArchiveError(PolyforgeError, ValueError):
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


def _check_member(archive: str | Path, root: Path, name: str) -> None:
    if os.path.isabs(name) or name.startswith(("/", "\\")) or not _inside(root, name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside {root}")


def _link_target(member_name: str, linkname: str, symbolic: bool) -> str:
    """Where a link points, relative to the archive root (symlinks are relative to their folder)."""
    base = os.path.dirname(member_name) if symbolic else ""
    return os.path.join(base, linkname)


def _rebase_absolute_link(member: tarfile.TarInfo) -> None:
    """Make ``/usr/x`` relative to the member's folder: in a .deb, ``/`` is the package's own root."""
    if member.issym() and os.path.isabs(member.linkname):
        folder = os.path.dirname(os.path.normpath(member.name.lstrip("/")))
        member.linkname = os.path.relpath(member.linkname.lstrip("/") or ".", folder or ".")


def extract_tar(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    label: str | None = None,
    rebase_absolute_links: bool = False,
) -> None:
    """Unpack a tar archive into ``dest``, refusing unsafe members before writing any.

    ``label`` names the archive in errors when ``archive`` is an intermediate file (a .deb's data).
    """
    shown, root = label or str(archive), Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode="r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(shown, root, member.name)
            if rebase_absolute_links:
                _rebase_absolute_link(member)
            if member.issym() or member.islnk():
                target = _link_target(member.name, member.linkname, member.issym())
                if os.path.isabs(member.linkname) or not _inside(root, target):
                    raise UnsafeArchiveError(
                        f"{shown}: link {member.name!r} -> {member.linkname!r} points outside {root}"
                    )
        # The "data" filter repeats these checks at write time (following links made by earlier
        # members) and also refuses device files and odd modes.
        try:
            tar.extractall(root, members=members, filter="data")
        except tarfile.FilterError as exc:
            member = exc.tarinfo.name if exc.tarinfo is not None else "?"
            raise UnsafeArchiveError(f"{shown}: member {member!r} refused: {exc}") from None


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
        # zipfile writes link entries as small regular files, so no link is ever followed on disk.
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
        with zf.open(info) as src, atomic_path(dest) as tmp, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
    return dest


def extract_deb(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Unpack a .deb's file tree (``dpkg-deb --fsys-tarfile``) through the safe tar extractor.

    The tar goes to a temp file rather than a pipe so every member is checked before any is written.
    """
    archive = Path(archive)
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "data.tar"
        with open(tar_path, "wb") as out:
            result = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=out, stderr=subprocess.PIPE)
        if result.returncode != 0:
            raise ValueError(f"{archive}: not a valid .deb: {result.stderr.decode(errors='replace').strip()}")
        extract_tar(tar_path, dest, label=f"{archive} (data.tar)", rebase_absolute_links=True)


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
        raise ValueError(
            f"{archive}: not an archive Polyforge unpacks ({', '.join(TAR_SUFFIXES + ZIP_SUFFIXES)}, .deb)"
        )
