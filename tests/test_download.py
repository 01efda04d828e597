"""Downloads against a real HTTP server on loopback, with injected faults; registry adapters."""

from __future__ import annotations

import hashlib
import http.server
import itertools
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import download, lock

BODY = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(BODY).hexdigest()


class FaultyHandler(http.server.BaseHTTPRequestHandler):
    """Serves BODY at every path; faults are chosen by path. Records every request it sees (and when)."""

    requests: list[tuple[str, str | None]] = []
    times: list[float] = []
    failures_left: dict[str, int] = {}
    retry_after: str | None = None  # the Retry-After header of /busy answers

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        range_header = self.headers.get("Range")
        type(self).requests.append((self.path, range_header))
        type(self).times.append(time.monotonic())
        if self.path.startswith("/missing"):
            self.send_error(404, "Not Found")
            return
        if self.path.startswith("/flaky") and self.failures_left.get(self.path, 0) > 0:
            self.failures_left[self.path] -= 1
            self.send_error(500, "Internal Server Error")
            return
        if self.path.startswith("/busy") and self.failures_left.get(self.path, 0) > 0:
            self.failures_left[self.path] -= 1
            self.send_response(429, "Too Many Requests")
            if self.retry_after is not None:
                self.send_header("Retry-After", self.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = int(range_header.split("=")[1].rstrip("-")) if range_header else 0
        if self.path.startswith("/norange"):
            start = 0  # a server that ignores Range and sends the whole body with 200
        if start >= len(BODY):  # nothing at or after the offset asked for (RFC 9110 15.5.17)
            self.send_response(416, "Range Not Satisfiable")
            self.send_header("Content-Range", f"bytes */{len(BODY)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = BODY[start:]
        claimed = start
        if self.path.startswith("/badrange"):
            body, claimed = BODY, 0  # 206 for a Range, but the whole body and a Content-Range that says so
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {claimed}-{len(BODY) - 1}/{len(BODY)}")
        self.end_headers()
        first = len(self.requests) == 1
        if self.path.startswith("/cut") or (self.path.startswith(("/truncated", "/norange")) and first):
            self.wfile.write(body[: len(body) // 2])  # promise everything, send half, hang up
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def server() -> Iterator[str]:
    FaultyHandler.requests = []
    FaultyHandler.times = []
    FaultyHandler.failures_left = {"/flaky.bin": 2, "/busy.bin": 2, "/busy-forever.bin": 10**6}
    FaultyHandler.retry_after = None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FaultyHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_plain_download(server: str, tmp_path: Path) -> None:
    path = download.fetch_url(f"{server}/plain.bin", tmp_path / "plain.bin", SHA, backoff=0.01)
    assert path.read_bytes() == BODY
    assert FaultyHandler.requests == [("/plain.bin", None)]


def test_truncated_body_is_resumed_with_range(server: str, tmp_path: Path) -> None:
    path = download.fetch_url(f"{server}/truncated.bin", tmp_path / "t.bin", SHA, backoff=0.01)
    assert path.read_bytes() == BODY
    ranges = [r for p, r in FaultyHandler.requests if r]
    assert ranges == [f"bytes={len(BODY) // 2}-"], FaultyHandler.requests


def test_server_ignoring_range_restarts_from_zero(server: str, tmp_path: Path) -> None:
    path = download.fetch_url(f"{server}/norange.bin", tmp_path / "n.bin", SHA, backoff=0.01)
    assert path.read_bytes() == BODY  # the 200 body replaced the partial instead of being appended to it
    assert [r for _, r in FaultyHandler.requests] == [None, f"bytes={len(BODY) // 2}-"]


def test_exhausted_retries_keep_the_partial_for_next_time(server: str, tmp_path: Path) -> None:
    with pytest.raises(download.DownloadError, match=r"/cut\.bin: failed after 2 attempts"):
        download.fetch_url(f"{server}/cut.bin", tmp_path / "c.bin", SHA, attempts=2, backoff=0.01)
    assert not (tmp_path / "c.bin").exists()
    assert (tmp_path / "c.bin.part").read_bytes() == BODY[: len(BODY) * 3 // 4]  # half, then half the rest
    assert [r for _, r in FaultyHandler.requests] == [None, f"bytes={len(BODY) // 2}-"]


def test_server_errors_are_retried(server: str, tmp_path: Path) -> None:
    path = download.fetch_url(f"{server}/flaky.bin", tmp_path / "f.bin", SHA, backoff=0.01)
    assert path.read_bytes() == BODY
    assert [p for p, _ in FaultyHandler.requests] == ["/flaky.bin"] * 3


@pytest.mark.parametrize(
    ("retry_after", "cap", "low", "high"),
    [
        ("1", 300, 0.9, 5.0),  # honoured: the backoff alone (0.01 s) would ask again at once
        ("3600", 1, 0.9, 5.0),  # capped: an hour asked for, a second waited
        ("not a date", 300, 0.0, 0.5),  # malformed: the backoff applies
    ],
)
def test_busy_server_429_honours_retry_after_with_a_cap(
    server: str, tmp_path: Path, retry_after: str, cap: float, low: float, high: float
) -> None:
    FaultyHandler.retry_after = retry_after
    path = download.fetch_url(f"{server}/busy.bin", tmp_path / "b.bin", SHA, backoff=0.01, retry_after_max=cap)
    assert path.read_bytes() == BODY
    assert FaultyHandler.requests == [("/busy.bin", None)] * 3
    gaps = [b - a for a, b in itertools.pairwise(FaultyHandler.times)]
    assert all(low <= gap < high for gap in gaps), gaps


def test_busy_server_without_end_fails_after_the_attempts_asked(server: str, tmp_path: Path) -> None:
    with pytest.raises(download.DownloadError, match=r"busy-forever\.bin: failed after 3 attempts \(HTTP 429"):
        download.fetch_url(f"{server}/busy-forever.bin", tmp_path / "b.bin", SHA, attempts=3, backoff=0.01)
    assert len(FaultyHandler.requests) == 3
    assert list(tmp_path.iterdir()) == []


def test_416_for_a_partial_already_complete_is_done(server: str, tmp_path: Path) -> None:
    (tmp_path / "c.bin.part").write_bytes(BODY)  # an earlier run got every byte, then was killed
    path = download.fetch_url(f"{server}/plain.bin", tmp_path / "c.bin", SHA, backoff=0.01)
    assert path.read_bytes() == BODY
    assert FaultyHandler.requests == [("/plain.bin", f"bytes={len(BODY)}-")]
    assert not (tmp_path / "c.bin.part").exists()


def test_416_naming_another_size_restarts_from_zero(server: str, tmp_path: Path) -> None:
    (tmp_path / "c.bin.part").write_bytes(BODY + b"stale tail")  # longer than the file the server has now
    path = download.fetch_url(f"{server}/plain.bin", tmp_path / "c.bin", SHA, backoff=0.01)
    assert path.read_bytes() == BODY
    assert FaultyHandler.requests == [("/plain.bin", f"bytes={len(BODY) + 10}-"), ("/plain.bin", None)]


def test_content_range_not_matching_the_request_restarts_from_zero(server: str, tmp_path: Path) -> None:
    (tmp_path / "r.bin.part").write_bytes(BODY[:1000])
    path = download.fetch_url(f"{server}/badrange.bin", tmp_path / "r.bin", SHA, backoff=0.01)
    assert path.read_bytes() == BODY  # not BODY[:1000] + BODY: the mismatched 206 was never appended
    assert FaultyHandler.requests == [("/badrange.bin", "bytes=1000-"), ("/badrange.bin", None)]


@pytest.mark.parametrize(
    ("header", "span"),
    [
        ("bytes 1000-1999/2000", (1000, 2000)),
        ("bytes 1000-1999/*", (1000, 2000)),
        ("bytes 1000-1499/2000", None),  # stops before the end: not what bytes=1000- asks for
        ("bytes 1000-999/2000", None),
        ("bytes */2000", None),
        (None, None),
    ],
)
def test_content_range_parsing(header: str | None, span: tuple[int, int] | None) -> None:
    assert download._content_range(header) == span


def test_wrong_checksum_fails_and_leaves_nothing(server: str, tmp_path: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(download.ChecksumMismatchError) as excinfo:
        download.fetch_url(f"{server}/plain.bin", tmp_path / "p.bin", wrong, backoff=0.01)
    assert wrong in str(excinfo.value) and SHA in str(excinfo.value)
    assert list(tmp_path.iterdir()) == []


def test_not_found_fails_clearly_without_retry(server: str, tmp_path: Path) -> None:
    with pytest.raises(download.DownloadError, match=r"/missing\.bin: HTTP 404"):
        download.fetch_url(f"{server}/missing.bin", tmp_path / "m.bin", SHA, backoff=0.01)
    assert len(FaultyHandler.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_file_url(tmp_path: Path) -> None:
    src = tmp_path / "corpus.txt"
    src.write_bytes(BODY)
    path = download.fetch_url(src.as_uri(), tmp_path / "out" / "corpus.txt", SHA)
    assert path.read_bytes() == BODY


def test_missing_file_url_and_unknown_scheme_are_named(tmp_path: Path) -> None:
    missing = (tmp_path / "nope.txt").as_uri()
    with pytest.raises(download.DownloadError, match=f"{missing}: no such file"):
        download.fetch_url(missing, tmp_path / "x", SHA)
    with pytest.raises(download.DownloadError, match="unsupported URL scheme 'ftp'"):
        download.fetch_url("ftp://example.org/x", tmp_path / "x", SHA)


def _url_config(tmp_path: Path, url: str, sha: str = SHA) -> dict:
    return {
        "cache_dir": str(tmp_path / "cache"),
        "lock_file": str(tmp_path / "sources.lock"),
        "sources": {"web": {"adapter": "url", "url": url, "sha256": sha, "format": "text", "role": "train",
                            "licence": "CC0", "lang": "en"}},
    }  # fmt: skip


def test_rebuild_into_fresh_output_root_uses_the_cache(server: str, tmp_path: Path) -> None:
    cfg = _url_config(tmp_path, f"{server}/plain.bin")
    download.fetch_source(cfg, "web", tmp_path / "run1" / "raw" / "web")
    assert len(FaultyHandler.requests) == 1
    download.fetch_source(cfg, "web", tmp_path / "run2" / "raw" / "web")
    assert len(FaultyHandler.requests) == 1  # nothing fetched the second time
    assert (tmp_path / "run2" / "raw" / "web" / "plain.bin").read_bytes() == BODY
    resolved = json.loads((tmp_path / "run2" / "raw" / "web" / "resolved.json").read_text())
    assert resolved == [{"filename": "plain.bin", "name": "plain.bin", "sha256": SHA, "url": f"{server}/plain.bin",
                         "version": None}]  # fmt: skip
    assert (tmp_path / "cache" / "sha256" / SHA / "plain.bin.sha256").read_text().startswith(SHA)


def test_partial_in_the_cache_is_resumed_by_the_next_run(server: str, tmp_path: Path) -> None:
    cfg = _url_config(tmp_path, f"{server}/plain.bin")
    partial = tmp_path / "cache" / "sha256" / SHA / "plain.bin.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(BODY[:1000])  # what an interrupted run left behind
    download.fetch_source(cfg, "web", tmp_path / "raw" / "web")
    assert FaultyHandler.requests == [("/plain.bin", "bytes=1000-")]
    assert (tmp_path / "raw" / "web" / "plain.bin").read_bytes() == BODY
    assert not partial.exists()


def test_failed_source_leaves_no_output_folder(server: str, tmp_path: Path) -> None:
    cfg = _url_config(tmp_path, f"{server}/plain.bin", sha="1" * 64)
    with pytest.raises(download.ChecksumMismatchError):
        download.fetch_source(cfg, "web", tmp_path / "raw" / "web")
    assert list((tmp_path / "raw").iterdir()) == []


def test_changed_source_stops_unless_lock_update_is_asked(server: str, tmp_path: Path) -> None:
    cfg = _url_config(tmp_path, f"{server}/plain.bin")
    lock.update_lock_file(cfg["lock_file"], {"web": [{"name": "plain.bin", "version": None, "url": "x",
                                                       "sha256": "2" * 64, "filename": "plain.bin"}]})  # fmt: skip
    with pytest.raises(lock.LockMismatchError, match=r"plain\.bin: sha256 2{64} -> " + SHA):
        download.fetch_source(cfg, "web", tmp_path / "raw" / "web")
    cfg["update_lock"] = True
    download.fetch_source(cfg, "web", tmp_path / "raw" / "web")
    assert (tmp_path / "raw" / "web" / "plain.bin").exists()


def test_local_source_copies_a_folder(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("hello\n")
    cfg = {"cache_dir": str(tmp_path / "cache"), "lock_file": str(tmp_path / "l.lock"),
           "sources": {"mine": {"adapter": "local", "path": str(corpus)}}}  # fmt: skip
    download.fetch_source(cfg, "mine", tmp_path / "raw" / "mine")
    assert (tmp_path / "raw" / "mine" / "corpus" / "a.txt").read_text() == "hello\n"


def test_hf_source_from_a_local_dataset(tmp_path: Path) -> None:
    data = tmp_path / "ds"
    data.mkdir()
    (data / "train.jsonl").write_text('{"text": "Guten Tag"}\n{"text": "Hallo Welt"}\n')
    cfg = {"cache_dir": str(tmp_path / "cache"), "lock_file": str(tmp_path / "l.lock"),
           "sources": {"hub": {"adapter": "hf", "dataset": str(data), "split": "train"}}}  # fmt: skip
    download.fetch_source(cfg, "hub", tmp_path / "raw" / "hub")
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "raw" / "hub" / "train.parquet").column("text").to_pylist() == [
        "Guten Tag", "Hallo Welt"
    ]  # fmt: skip


def test_hf_rebuild_uses_the_cache_once_locked(tmp_path: Path) -> None:
    data = tmp_path / "ds"
    data.mkdir()
    (data / "train.jsonl").write_text('{"text": "Hallo Welt"}\n')
    cfg = {"cache_dir": str(tmp_path / "cache"), "lock_file": str(tmp_path / "l.lock"),
           "sources": {"hub": {"adapter": "hf", "dataset": str(data), "split": "train"}}}  # fmt: skip
    first = tmp_path / "run1" / "raw" / "hub"
    download.fetch_source(cfg, "hub", first)
    download.write_lock([str(first / "resolved.json")], cfg["lock_file"])
    shutil.rmtree(data)  # the dataset is gone: only the cache can serve the rebuild
    second = tmp_path / "run2" / "raw" / "hub"
    download.fetch_source(cfg, "hub", second)
    assert (second / "train.parquet").read_bytes() == (first / "train.parquet").read_bytes()
    # Asking to update the lock resolves the source afresh instead of trusting the cache.
    data.mkdir()
    (data / "train.jsonl").write_text('{"text": "Guten Tag"}\n')
    cfg["update_lock"] = True
    third = tmp_path / "run3" / "raw" / "hub"
    download.fetch_source(cfg, "hub", third)
    assert (third / "train.parquet").read_bytes() != (first / "train.parquet").read_bytes()


def _lid_config(tmp_path: Path, model: dict) -> dict:
    return {"cache_dir": str(tmp_path / "cache"), "lid": {"model": model}}


def test_lid_model_by_url_is_cached(server: str, tmp_path: Path) -> None:
    cfg = _lid_config(tmp_path, {"adapter": "url", "url": f"{server}/lid.176.ftz", "sha256": SHA})
    download.fetch_lid_model(cfg, tmp_path / "run1" / "model.ftz")
    download.fetch_lid_model(cfg, tmp_path / "run2" / "model.ftz")
    assert (tmp_path / "run2" / "model.ftz").read_bytes() == BODY
    assert len(FaultyHandler.requests) == 1


def test_lid_model_local_path_with_wrong_sha_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model.ftz"
    model.write_bytes(b"not the model")
    cfg = _lid_config(tmp_path, {"adapter": "local", "path": str(model), "sha256": SHA})
    with pytest.raises(download.ChecksumMismatchError, match=SHA):
        download.fetch_lid_model(cfg, tmp_path / "raw" / "_lid" / "model.ftz")
    assert not (tmp_path / "raw" / "_lid" / "model.ftz").exists()
    cfg["lid"]["model"]["sha256"] = hashlib.sha256(b"not the model").hexdigest()
    assert download.fetch_lid_model(cfg, tmp_path / "raw" / "_lid" / "model.ftz").read_bytes() == b"not the model"


# ----------------------------------------------------------------- real registries (small packages)

needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")


@pytest.mark.network
@needs_apt
def test_deb_adapter_fetches_and_unpacks(tmp_path: Path) -> None:
    cfg = {"cache_dir": str(tmp_path / "cache"), "lock_file": str(tmp_path / "l.lock"),
           "sources": {"f": {"adapter": "deb", "packages": ["fortunes-min"]}}}  # fmt: skip
    resolved = download.fetch_source(cfg, "f", tmp_path / "raw" / "f")
    assert resolved[0].name == "fortunes-min" and resolved[0].version
    assert (tmp_path / "raw" / "f" / "fortunes-min" / "usr" / "share" / "games" / "fortunes").is_dir()


@pytest.mark.network
@needs_apt
def test_missing_deb_package_is_named(tmp_path: Path) -> None:
    cfg = {"cache_dir": str(tmp_path / "cache"), "lock_file": str(tmp_path / "l.lock"),
           "sources": {"f": {"adapter": "deb", "packages": ["fortunes-min", "no-such-package-polyforge"]}}}  # fmt: skip
    with pytest.raises(download.PackageNotFoundError, match="no-such-package-polyforge"):
        download.fetch_source(cfg, "f", tmp_path / "raw" / "f")
    assert not (tmp_path / "raw" / "f").exists()


@pytest.mark.network
@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm")
def test_npm_adapter_and_missing_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {"cache_dir": str(tmp_path / "cache"), "lock_file": str(tmp_path / "l.lock"),
           "sources": {"n": {"adapter": "npm", "package": "is-number", "version": "7.0.0"},
                       "bad": {"adapter": "npm", "package": "no-such-package-polyforge-x", "version": "1.0.0"}}}  # fmt: skip
    # A relative output folder, as the default config's `output_dir: results` gives the rules: npm runs inside the
    # staging folder, so a relative destination would point into itself.
    monkeypatch.chdir(tmp_path)
    download.fetch_source(cfg, "n", Path("raw") / "n")
    assert (tmp_path / "raw" / "n" / "is-number-7.0.0" / "package" / "package.json").exists()
    with pytest.raises(download.PackageNotFoundError, match="no-such-package-polyforge-x"):
        download.fetch_source(cfg, "bad", tmp_path / "raw" / "bad")
