"""The text rules and language specs of the clean stage, shared with the LID evaluation on UDHR.

A low-level module: it imports only pipeline.langs and pipeline.lid, and both the clean stage
(pipeline.clean) and the statistics (pipeline.stats) import it, so the two judge text the same way.

Order of the rules for one row (the first that fires is its reason):
too-long (raw length, before any work) → too-short → too-long → encoding (U+FFFD) → symbols →
the LID rule of the row's source's policy (lid-mismatch / lid-low-confidence / lid-script-mismatch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import langs, lid

# A raw line longer than this many times max_chars is rejected before it is even normalized:
# whitespace folding cannot bring it under the bound, and a 5 MB line must cost nothing.
RAW_LENGTH_FACTOR = 8
# C0/C1 control characters except whitespace (\t \n \v \f \r, NEL), which is folded instead; BOM and
# noncharacters too.  Zero-width (non-)joiners are kept: Indic and Arabic-script text needs them.
_CONTROL = r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\x{feff}\x{fffe}\x{ffff}]"
_SPACE_RUN = r"[\t-\r \x{85}\p{Z}]+"
# Rows that need folding at all: whitespace other than a plain space (\p{Z} spelled out), or two in a row.
_ODD_SPACE = r"[\t-\r\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]|  "
_MARKUP = r"<[^<>]{0,200}>|&[#\w]{1,10};"
_NON_LETTER = r"[^\p{L}\p{M} ]"  # after folding, " " is the only whitespace left
_REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Rules:
    """Row-level bounds from config["clean"]."""

    min_chars: int
    max_chars: int
    min_words: int
    max_words: int
    max_symbol_ratio: float
    max_replacement_ratio: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Rules:
        c = cfg["clean"]
        return cls(
            int(c["min_chars"]),
            int(c["max_chars"]),
            int(c["min_words"]),
            int(c["max_words"]),
            float(c["max_symbol_ratio"]),
            float(c["max_replacement_ratio"]),
        )


# LID policies, per source (config sources.<name>.lid_policy):
#   strict:   keep a row only when the top-1 label is the language and p >= threshold;
#   declared: the source's language is declared by its translators: reject a row only when another
#             language is top-1 with p >= threshold (short UI strings rarely reach p >= threshold).
LID_POLICIES = ("strict", "declared")
# The default where a source names none, by format: see README.md, "Language identification".
DEFAULT_LID_POLICY = {"libreoffice_help": "declared", "gettext": "declared"}
# Length buckets (characters of the cleaned text) of the LID recall figures in stats/languages.json.
LENGTH_BUCKETS = (0, 20, 40, 80, 160)
BUCKET_NAMES = tuple(
    f"{lo}-{hi - 1}" if hi else f"{lo}+" for lo, hi in zip(LENGTH_BUCKETS, (*LENGTH_BUCKETS[1:], None), strict=True)
)


def lid_policy(source: dict[str, Any]) -> str:
    """The LID policy of a source's config entry: its ``lid_policy``, else the default for its format."""
    return source.get("lid_policy") or DEFAULT_LID_POLICY.get(source.get("format", ""), "strict")


@dataclass(frozen=True)
class LangSpec:
    """How rows of one language are judged: word unit, LID labels, threshold, and each source's LID policy."""

    code: str
    unspaced: bool
    lid_expected: frozenset[str] | None  # the model labels that are this language; None: skip LID (`lid: false`)
    threshold: float
    scheme: str = "lid176"  # the LID model's label scheme (pipeline.lid.SCHEMES)
    policies: tuple[tuple[str, str], ...] = ()  # (source, policy); sources not named are "strict"

    def policy(self, source: str) -> str:
        return dict(self.policies).get(source, "strict")


def lang_specs(cfg: dict[str, Any], label_map: dict[str, frozenset[str]]) -> dict[str, LangSpec]:
    """Every configured language's spec; ``label_map`` is pipeline.lid.label_map(cfg, model)."""
    default = float(cfg["lid"]["threshold"])
    scheme = cfg["lid"].get("model", {}).get("label_scheme", "lid176")
    policies = tuple(sorted((name, lid_policy(source)) for name, source in cfg["sources"].items()))
    specs = {}
    for code, options in cfg["languages"].items():
        enabled = options.get("lid", True) is not False
        specs[code] = LangSpec(
            code=code,
            unspaced=langs.is_unspaced(code),
            lid_expected=label_map[code] if enabled else None,
            threshold=float(options.get("lid_threshold", default)),
            scheme=scheme,
            policies=policies,
        )
    return specs


# --------------------------------------------------------------------------- text rules (vectorized)


def repair_utf8(texts: pa.Array) -> tuple[pa.Array, int]:
    """Replace invalid UTF-8 (which an Arrow file can hold) by U+FFFD; return the count of rows changed."""
    try:
        texts.validate(full=True)
        return texts, 0
    except pa.ArrowInvalid:
        pass
    raw = texts.cast(pa.binary()).to_pylist()
    fixed = [None if b is None else b.decode("utf-8", errors="replace") for b in raw]
    changed = sum(1 for b, t in zip(raw, fixed, strict=True) if b is not None and b != t.encode("utf-8"))
    return pa.array(fixed, pa.string()), changed


def _where(texts: pa.Array, mask: pa.Array, transform) -> pa.Array:
    """``transform`` applied to the rows of ``mask`` only (most rows need no work: skip them cheaply)."""
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return texts
    return pc.replace_with_mask(texts, mask, transform(texts.filter(mask)))


def normalize_texts(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, dict[str, int]]:
    """Valid UTF-8, control characters removed (counted), NFC, whitespace runs folded to one space, trimmed."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    texts, invalid = repair_utf8(texts)
    controls = pc.count_substring_regex(texts, _CONTROL)
    counts = {
        "invalid_utf8_rows": invalid,
        "control_chars_removed": int(pc.sum(controls).as_py() or 0),
        "nul_removed": int(_on_rows(texts, _np(controls) > 0, lambda t: pc.count_substring(t, "\x00")).sum()),
    }
    out = _where(texts, pc.greater(controls, 0), lambda t: pc.replace_substring_regex(t, _CONTROL, ""))
    out = _where(out, pc.invert(pc.string_is_ascii(out)), lambda t: pc.utf8_normalize(t, "NFC"))
    out = _where(
        out, pc.match_substring_regex(out, _ODD_SPACE), lambda t: pc.replace_substring_regex(t, _SPACE_RUN, " ")
    )
    return pc.utf8_trim(out, " "), counts


def _np(array: pa.Array) -> np.ndarray:
    return array.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def _bool(array: pa.Array) -> np.ndarray:
    return array.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def _on_rows(texts: pa.Array, rows: np.ndarray, count) -> np.ndarray:
    """``count`` (an integer kernel) on the rows of the boolean mask ``rows``, zero elsewhere."""
    out = np.zeros(len(texts), dtype=np.int64)
    if rows.any():
        out[rows] = _np(count(texts.filter(pa.array(rows))))
    return out


@dataclass
class RuleResult:
    """What the text rules say about a column of rows."""

    text: pa.Array  # cleaned text; the raw (UTF-8-repaired) text for rows too long to clean
    reasons: np.ndarray  # object array: None (passes) or the reason
    chars: np.ndarray
    words: np.ndarray  # whitespace words, or characters for unspaced scripts
    counts: dict[str, int]


def rule_reasons(raw: pa.Array, rules: Rules, unspaced: bool) -> RuleResult:
    """Clean a column of texts and give each row the first rule it fails (too-long is checked first)."""
    raw_len = _np(pc.utf8_length(raw))
    huge = raw_len > rules.max_chars * RAW_LENGTH_FACTOR
    huge_mask = pa.array(huge)
    if huge.any():
        raw, _ = repair_utf8(raw)  # kept as it came in (made valid): never normalized nor shown to LID
        text, counts = normalize_texts(pc.if_else(huge_mask, "", raw))
        text = pc.if_else(huge_mask, raw, text)
    else:
        text, counts = normalize_texts(raw)
    chars = np.where(huge, raw_len, _np(pc.utf8_length(text)))
    spaces = _np(pc.count_substring(text, " "))
    words = chars.copy() if unspaced else np.where(chars > 0, spaces + 1, 0)
    fffd = _on_rows(text, ~_bool(pc.string_is_ascii(text)), lambda t: pc.count_substring(t, _REPLACEMENT))
    # Letters outside markup, over all non-space characters: tags and entities count as symbols.
    letters = chars - spaces - _np(pc.count_substring_regex(text, _NON_LETTER))
    markup = _bool(pc.match_substring_regex(text, "[<&]"))
    if markup.any():
        bare = pc.replace_substring_regex(text.filter(pa.array(markup)), _MARKUP, "")
        letters[markup] = _np(pc.utf8_length(bare)) - _np(pc.count_substring(bare, " "))
        letters[markup] -= _np(pc.count_substring_regex(bare, _NON_LETTER))
    symbol_ratio = 1.0 - letters / np.maximum(chars - spaces, 1)
    # Word bounds only where words are spaced: a 600-character Japanese line is not "600 words".
    too_few_words = np.zeros(len(chars), bool) if unspaced else words < rules.min_words
    too_many_words = np.zeros(len(chars), bool) if unspaced else words > rules.max_words

    reasons = np.full(len(raw_len), None, dtype=object)
    for mask, reason in (
        (huge, "too-long"),
        ((chars < rules.min_chars) | too_few_words, "too-short"),
        ((chars > rules.max_chars) | too_many_words, "too-long"),
        ((fffd > 0) & (fffd > rules.max_replacement_ratio * np.maximum(chars, 1)), "encoding"),
        (symbol_ratio > rules.max_symbol_ratio, "symbols"),
    ):
        reasons[(reasons == None) & mask] = reason  # noqa: E711 (elementwise on an object array)
    return RuleResult(text, reasons, chars, words, counts)


def _letter_class(names: Sequence[str]) -> str:
    return "[" + "".join(rf"\p{{{n}}}" for n in names) + "]"


def _letters(texts: pa.Array, names: Sequence[str]) -> np.ndarray:
    return _np(pc.count_substring_regex(texts, _letter_class(names)))


def _has_letter(texts: pa.Array, rows: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Whether a row holds a letter of these scripts, on the rows of the boolean mask ``rows``; False elsewhere.

    A match stops at the first such letter, where counting them scans every character.
    """
    out = np.zeros(len(texts), dtype=bool)
    if rows.any():
        out[rows] = _bool(pc.match_substring_regex(texts.filter(pa.array(rows)), _letter_class(names)))
    return out


def script_mismatch(texts: pa.Array, code: str) -> np.ndarray:
    """True where the text's own Unicode script is not its language's.

    - Two-script languages (Serbian): the script with more letters in the text must be the code's
      (lid.176 says ``sr`` for both scripts).  Chinese's two scripts are both Han: no check between them.
    - Languages not written in Latin: a row with no letter of its script but Latin letters is not in the
      language (untranslated English in LibreOffice's Hindi help, whatever LID's low-confidence guess).
    - Latin-script languages: no check (Latin product names and code are common in every language).
    """
    out = np.zeros(len(texts), dtype=bool)
    lang, _, script = code.partition("-")
    own = langs.SCRIPT_LETTERS.get(script or langs.script_of(code))
    if not own or len(texts) == 0:
        return out
    variants = [
        langs.SCRIPT_LETTERS[v]
        for v in langs.SCRIPT_VARIANTS.get(lang, ())
        if v != script and set(langs.SCRIPT_LETTERS[v]) != set(own)
    ]
    if variants:
        mine = _letters(texts, own)
        for other in variants:
            out |= _letters(texts, other) > mine
    elif own != ("Latin",):
        # Only whether a row has letters matters here, not how many: two matches, no counts.
        lacks_own = ~_has_letter(texts, np.ones(len(texts), dtype=bool), own)
        out = lacks_own & _has_letter(texts, lacks_own, ("Latin",))
    return out


def _variant_code(code: str) -> str:
    """The other script's code of a two-script language (``sr-Latn`` → ``sr-Cyrl``)."""
    lang, _, script = code.partition("-")
    others = [v for v in langs.SCRIPT_VARIANTS.get(lang, ()) if v != script]
    return f"{lang}-{others[0]}" if others else code


@dataclass
class LidResult:
    """What LID said of a column of rows: NaN/None where it did not run."""

    labels: list[str | None]  # canonical code of the top-1 label (the row's own code when it is one of its labels)
    probs: np.ndarray  # float32, clipped to 1.0
    ran: np.ndarray  # bool: LID judged this row
    strict_ok: np.ndarray  # bool: the strict rule keeps it
    declared_ok: np.ndarray  # bool: the declared rule keeps it


def apply_lid(
    texts: pa.Array,
    reasons: np.ndarray,
    spec: LangSpec,
    model_path: str,
    batch_size: int,
    sources: pa.Array | pa.ChunkedArray | None = None,
) -> LidResult:
    """Run LID on rows that passed so far; set their reasons in place by each row's source's policy.

    Strict: lid-mismatch (top-1 is another language) → lid-low-confidence (p < threshold) → lid-script-mismatch.
    Declared: lid-mismatch (another language is top-1 with p >= threshold) → lid-script-mismatch.
    ``sources`` gives each row's source (for its policy); None judges every row strictly.
    """
    n = len(reasons)
    probs = np.full(n, np.nan, dtype=np.float32)
    ran, strict_ok, declared_ok = (np.zeros(n, dtype=bool) for _ in range(3))
    todo = np.flatnonzero(reasons == None)  # noqa: E711
    if spec.lid_expected is None or len(todo) == 0:
        return LidResult([None] * n, probs, ran, strict_ok, declared_ok)
    judged = texts.take(pa.array(todo))
    said = lid.predict_indexed(model_path, judged, batch_size)
    # Per distinct label, then spread to rows by index: no per-row Python.
    is_lang = np.array([label in spec.lid_expected for label in said.labels], dtype=bool)[said.index]
    confident = said.probs >= spec.threshold
    wrong_script = script_mismatch(judged, spec.code)
    strict = _first_reason(
        len(todo), (~is_lang, "lid-mismatch"), (~confident, "lid-low-confidence"), (wrong_script, "lid-script-mismatch")
    )
    declared = _first_reason(len(todo), (~is_lang & confident, "lid-mismatch"), (wrong_script, "lid-script-mismatch"))
    reasons[todo] = np.where(_declared_rows(spec, sources, todo), declared, strict)
    codes = np.array([lid.label_code(label, spec.scheme) for label in said.labels], dtype=object)[said.index]
    codes[is_lang] = spec.code
    codes[is_lang & wrong_script] = _variant_code(spec.code)
    labels_out = np.full(n, None, dtype=object)
    labels_out[todo] = codes
    probs[todo] = said.probs
    ran[todo] = True
    strict_ok[todo] = is_lang & confident & ~wrong_script
    declared_ok[todo] = ~(~is_lang & confident) & ~wrong_script
    return LidResult(labels_out.tolist(), probs, ran, strict_ok, declared_ok)


def _first_reason(n: int, *rules: tuple[np.ndarray, str]) -> np.ndarray:
    """Object array of ``n``: the reason of the first rule whose mask is set, else None."""
    out = np.full(n, None, dtype=object)
    for mask, reason in reversed(rules):  # earlier rules overwrite later ones
        out[mask] = reason
    return out


def _declared_rows(spec: LangSpec, sources: pa.Array | pa.ChunkedArray | None, todo: np.ndarray) -> np.ndarray:
    """True for the rows of ``todo`` whose source's LID policy is declared (policies looked up per source)."""
    if sources is None:
        return np.zeros(len(todo), dtype=bool)
    sources = sources.combine_chunks() if isinstance(sources, pa.ChunkedArray) else pa.array(sources)
    encoded = sources.take(pa.array(todo)).dictionary_encode()
    names = encoded.dictionary.to_pylist()
    declared = np.array([spec.policy(name) == "declared" for name in [*names, None]], dtype=bool)
    return declared[encoded.indices.fill_null(len(names)).to_numpy(zero_copy_only=False)]


def length_buckets(chars: np.ndarray) -> np.ndarray:
    """Index of each length (characters) in LENGTH_BUCKETS."""
    return np.searchsorted(np.asarray(LENGTH_BUCKETS[1:]), np.asarray(chars), side="right")


def prob_array(probs: np.ndarray) -> pa.Array:
    return pa.array(probs, type=pa.float32(), mask=np.isnan(probs))
