"""Archive members that would land outside the target folder are refused; good archives unpack."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline import archives


def _tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            data = b"payload" if info.isfile() else None
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def test_good_tar_unpacks(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "ok.tar.gz", [_file("package/a.txt"), _symlink("package/b.txt", "a.txt")])
    archives.extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "package" / "a.txt").read_bytes() == b"payload"


@pytest.mark.parametrize(
    "member",
    [_file("../evil.txt"), _file("/abs/evil.txt"), _file("package/../../evil.txt"),
     _symlink("package/link", "../../etc/passwd"), _symlink("package/abs", "/etc/passwd")],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink-out", "symlink-absolute"],
)  # fmt: skip
def test_unsafe_tar_members_are_refused(tmp_path: Path, member: tarfile.TarInfo) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", [_file("package/ok.txt"), member])
    with pytest.raises(archives.UnsafeArchiveError, match="bad.tar.gz"):
        archives.extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "package" / "ok.txt").exists()  # refused before anything is written


def _zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name in names:
            zf.writestr(name, "payload")
    return path


@pytest.mark.parametrize("suffix", [".zip", ".whl"])
@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "pkg/../../evil.txt"])
def test_unsafe_zip_and_wheel_members_are_refused(tmp_path: Path, suffix: str, member: str) -> None:
    archive = _zip(tmp_path / f"bad{suffix}", ["pkg/ok.txt", member])
    with pytest.raises(archives.UnsafeArchiveError, match=member.replace(".", r"\.")):
        archives.extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_zip_symlink_pointing_out_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("pkg/link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "../../outside")
    with pytest.raises(archives.UnsafeArchiveError, match="points outside"):
        archives.extract_zip(archive, tmp_path / "out")


def test_extract_member_from_wheel(tmp_path: Path) -> None:
    wheel = _zip(tmp_path / "pkg-1.0-py3-none-any.whl", ["pkg/resources/model.bin", "pkg/__init__.py"])
    out = archives.extract_member(wheel, "pkg/resources/model.bin", tmp_path / "model.bin")
    assert out.read_text() == "payload"
    with pytest.raises(FileNotFoundError, match="pkg/missing.bin"):
        archives.extract_member(wheel, "pkg/missing.bin", tmp_path / "x")


def test_archive_stem() -> None:
    assert archives.archive_stem("corpus.tar.gz") == "corpus"
    assert archives.archive_stem("data.zip") == "data"
    assert archives.archive_stem("notes.txt") is None
