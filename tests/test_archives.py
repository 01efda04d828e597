"""Archive members that would land outside the target folder are refused; good archives unpack."""

from __future__ import annotations

import io
import shutil
import subprocess
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
        info.external_attr = 0o120777 << 16
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


def test_hardlink_pointing_out_is_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("package/hard")
    link.type, link.linkname = tarfile.LNKTYPE, "../outside.txt"
    archive = _tar(tmp_path / "hard.tar.gz", [_file("package/ok.txt"), link])
    with pytest.raises(archives.UnsafeArchiveError, match="package/hard"):
        archives.extract_tar(archive, tmp_path / "out")


def test_device_file_is_refused_by_the_data_filter(tmp_path: Path) -> None:
    device = tarfile.TarInfo("package/dev")
    device.type = tarfile.CHRTYPE
    archive = _tar(tmp_path / "dev.tar", [device])
    with pytest.raises(archives.UnsafeArchiveError, match=r"dev\.tar: member 'package/dev'"):
        archives.extract_tar(archive, tmp_path / "out")


def test_good_zip_unpacks(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "ok.zip", ["pkg/a.txt", "pkg/sub/b.txt"])
    archives.extract_archive(archive, tmp_path / "out")
    assert (tmp_path / "out" / "pkg" / "sub" / "b.txt").read_text() == "payload"


def _deb(path: Path, data_members: list[tarfile.TarInfo]) -> Path:
    """A minimal .deb (ar: debian-binary, control.tar.gz, data.tar.gz) made without dpkg-deb's checks."""
    work = path.parent / f"{path.name}.parts"
    work.mkdir()
    (work / "debian-binary").write_text("2.0\n")
    control = tarfile.TarInfo("./control")
    text = b"Package: evil\nVersion: 1.0\nArchitecture: all\nMaintainer: x <x@example.org>\nDescription: x\n"
    control.size = len(text)
    with tarfile.open(work / "control.tar.gz", "w:gz") as tar:
        tar.addfile(control, io.BytesIO(text))
    _tar(work / "data.tar.gz", data_members)
    subprocess.run(["ar", "rc", str(path), "debian-binary", "control.tar.gz", "data.tar.gz"], cwd=work, check=True)
    return path


needs_deb_tools = pytest.mark.skipif(not (shutil.which("ar") and shutil.which("dpkg-deb")), reason="needs ar, dpkg-deb")


@needs_deb_tools
def test_deb_unpacks_and_traversal_in_it_is_refused(tmp_path: Path) -> None:
    good = _deb(tmp_path / "good.deb", [_file("./usr/share/doc/x.txt")])
    archives.extract_deb(good, tmp_path / "out")
    assert (tmp_path / "out" / "usr" / "share" / "doc" / "x.txt").read_bytes() == b"payload"
    bad = _deb(tmp_path / "bad.deb", [_file("./usr/ok.txt"), _file("./../../evil.txt")])
    with pytest.raises(archives.UnsafeArchiveError, match=r"bad\.deb \(data\.tar\): member '\./\.\./\.\./evil\.txt'"):
        archives.extract_deb(bad, tmp_path / "out2")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out2" / "usr" / "ok.txt").exists()


@needs_deb_tools
def test_absolute_link_in_a_deb_stays_inside_the_package_tree(tmp_path: Path) -> None:
    deb = _deb(
        tmp_path / "abs.deb", [_file("./usr/share/a/data.txt"), _symlink("./usr/lib/data.txt", "/usr/share/a/data.txt")]
    )
    archives.extract_deb(deb, tmp_path / "out")
    link = tmp_path / "out" / "usr" / "lib" / "data.txt"
    assert link.is_symlink() and link.read_bytes() == b"payload"
    assert link.resolve() == (tmp_path / "out" / "usr" / "share" / "a" / "data.txt").resolve()
