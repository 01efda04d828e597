"""`python -m model embed`: one vector per line, independent of batching, clear errors for bad requests."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.ipc as ipc
import pytest

from model import embed
from tests.test_export import random_run, train_small_vocab

REPO = Path(__file__).resolve().parent.parent
LINES = ["Alle Menschen sind frei und gleich an Würde und Rechten geboren.", "", "kurz",
         "Jeder hat das Recht auf Leben, Freiheit und Sicherheit der Person. " * 3, "🦩 𠜎", "kurz",
         "Alle Menschen sind frei und gleich an Würde und Rechten geboren.", "Niemand darf gefoltert werden."]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("embed")
    random_run(tmp / "run", train_small_vocab(tmp / "vocab"))
    return tmp / "run"


def run_cli(run_dir: Path, *args: str, lines: list[str] = LINES) -> subprocess.CompletedProcess:
    stdin = "".join(f"{line}\n" for line in lines).encode("utf-8")
    return subprocess.run([sys.executable, "-m", "model", "embed", str(run_dir), *args],
                          input=stdin, capture_output=True, cwd=REPO, timeout=120)  # fmt: skip


def assert_rows_close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))


def test_one_vector_per_line_and_batching_does_not_matter(run_dir: Path) -> None:
    many = LINES * 3 + ["a\u2028b"]  # U+2028 inside a line does not split it
    vectors = embed.embed_lines(run_dir, many, "de", layer=2, batch_size=3)
    assert vectors.shape == (len(many), 32) and vectors.dtype == np.float32 and np.isfinite(vectors).all()
    # The same line in different batches (with different neighbours and padding) gives the same vector.
    assert_rows_close(vectors[6], vectors[0])
    assert_rows_close(vectors[5], vectors[2])
    assert_rows_close(vectors[len(LINES)], vectors[0])
    alone = embed.embed_lines(run_dir, [LINES[0]], "de", layer=2, batch_size=1)
    assert_rows_close(alone[0], vectors[0])
    # Layer and language change the vectors.
    assert not np.allclose(embed.embed_lines(run_dir, LINES, "de", layer=0), vectors[: len(LINES)])
    assert not np.allclose(embed.embed_lines(run_dir, LINES, "en", layer=2), vectors[: len(LINES)])


def test_cli_writes_npy_to_stdout_and_arrow_to_a_file(run_dir: Path, tmp_path: Path) -> None:
    result = run_cli(run_dir, "--lang", "de", "--layer", "1")
    assert result.returncode == 0, result.stderr.decode()
    vectors = np.load(io.BytesIO(result.stdout))
    assert vectors.shape == (len(LINES), 32)
    assert_rows_close(vectors, embed.embed_lines(run_dir, LINES, "de", layer=1))
    embed.write_vectors(vectors, str(tmp_path / "v.arrow"))
    table = ipc.open_file(str(tmp_path / "v.arrow")).read_all()
    assert table.num_rows == len(LINES)
    np.testing.assert_array_equal(np.array(table["vector"].to_pylist(), dtype=np.float32), vectors)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--lang", "xx", "--layer", "1"], r"language 'xx' is not one of this model's languages: de, en, hi"),
     (["--lang", "de", "--layer", "3"], r"layer 3 is out of range: this model has layers 0 \(embeddings\) to 2")],
)  # fmt: skip
def test_cli_refuses_unknown_language_and_layer(run_dir: Path, args: list[str], message: str) -> None:
    result = run_cli(run_dir, *args)
    assert result.returncode != 0 and result.stdout == b""
    assert re.search(message, result.stderr.decode()), result.stderr.decode()


def test_a_different_vocabulary_beside_the_model_is_refused(run_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "run"
    other.mkdir()
    (other / "model.pt").write_bytes((run_dir / "model.pt").read_bytes())
    (other / "spm.model").write_bytes((run_dir / "spm.model").read_bytes() + b"\0")
    with pytest.raises(ValueError, match=r"has sha256 [0-9a-f]{64}, but .* vocabulary of sha256 [0-9a-f]{64}"):
        embed.embed_lines(other, ["x"], "de", layer=1)
