"""FreeDict dictionaries (Debian ``dict-freedict-eng-xxx``): gold single-word pairs for lexicon induction.

A package holds ``usr/share/dictd/freedict-eng-xxx.index`` and ``.dict.dz`` (dictzip = gzip, so
``gzip`` reads it whole; a plain ``.dict`` is read too).  Each index line is
``key<TAB>offset<TAB>length``, numbers in FreeDict's base64 digits (``A-Za-z0-9+/``, most significant
first), pointing at one entry's bytes in the dictionary text.  Entries are read only through the index:
the text between them (the ``00database*`` info entries, layout) is never guessed at.

An entry: a header line ``headword /pron/ <pos>``, then sense lines.  What differs by dictionary:
- eng-deu: ``<fem>``/``<v, trans>`` tags, ``[zool.]`` labels, ``see:``/``Synonym(s):``/``Note:`` lines and
  ``"example"  - Beispiel`` lines;
- eng-hin: ``1. पानी~आना`` (``~`` is a space), quoted example lines, sometimes an English sentence as a sense;
- eng-jpn: each sense line of translations is followed by an English gloss line (``human abode``), and
  sense numbers sometimes trail a line (``水, みず 2.``);
- eng-fra/spa/rus: ``1. a, b`` sense lines only.
Lines that are not translations are dropped by reason: ``example_line`` (starts with a quote),
``reference_line`` (``see:``, ``Synonym:``, ``Note:``…), ``gloss_line`` (for a target written in a
non-Latin script: a line without a letter of it, i.e. English glosses and sentences).  Translation
lines lose ``<…>``, ``[…]``, ``{…}`` and ``(…)`` (optional material) and split at commas and semicolons.

Every candidate (headword, translation) is kept or dropped under the first reason that applies, counted
in ``extract_stats.json``: ``multi_word_headword``, ``multi_word_translation`` (whitespace inside, ``~``
and ``_`` included), ``affix`` (a leading or trailing hyphen or ellipsis: ``water‐``, ``aqu‐``, ``Gehirn…``), ``non_word_character``
(symbols other than letters, marks, digits, inner hyphens, apostrophes and periods), ``no_letters``,
``wrong_script`` (translation letters outside the target's script: Latin in Hindi, non-Latin in German),
``same_string`` (both sides one string: in a joint vocabulary they share one vector and would score
1.0 even for random weights), ``duplicate_pair``.  Index lines: ``metadata_entry`` (skipped, the
``00database*`` info), ``duplicate_index_entry`` (a second key for an entry already read),
``bad_index_line`` (warned).

Output ``{pivot}-{x}.arrow`` (schemas.PARALLEL), sorted by headword then translation: ``src_text`` the
English headword as the entry spells it (the index key is lowercased), ``tgt_text`` one translation,
``row_id`` ``{source}/{pivot}-{x}/{headword}/{translation}``, ``doc_id`` the dictionary
(``freedict-eng-spa``), ``group`` the casefolded headword, so one English word (``Armenian``/``armenian``)
is wholly seed or test in every pair.  Known noise kept: eng-spa truncates some multi-word headwords
to their first word and glues their translation (``train`` → ``billetedeltren``, from *train ticket*);
nothing in the entry tells them apart.
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import langcodes

from pipeline.extract.common import OutputSet, SourceContext, clean_text, decode_utf8

INDEX_GLOB = "freedict-*.index"
_NAME = re.compile(r"^freedict-([a-z]{2,3})-([a-z]{2,3})$")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64)}
_HEADER_END = re.compile(r"\s+(?=[/<(])")  # the headword ends where pronunciation, POS or a symbol begins
_REFERENCE = re.compile(r"^(see|synonyms?|antonyms?|notes?|also)\s*:", re.IGNORECASE)
_SENSE_NUMBER = re.compile(r"^\d+\.\s*|\s+\d+\.$")  # ``1. a, b``; jpn's stray trailing ``a 2.``
_BRACKETED = re.compile(r"<[^<>]*>|\[[^\[\]]*\]|\{[^{}]*\}|\([^()]*\)")
_SEPARATORS = re.compile(r"[,;]")
_HYPHENS = "-\u2010\u2011"  # ASCII hyphen-minus, Unicode hyphen, non-breaking hyphen
_AFFIX_MARKS = _HYPHENS + "\u2026"  # ``Gehirn…`` marks a combining form, like ``aqu‐``
_QUOTES = "'\"\u2018\u2019\u201c\u201d\u201e\u00ab\u00bb"
_SPACE_MARKS = str.maketrans({"~": " ", "_": " "})  # eng-hin writes spaces as ``~`` (and ``_``)
# Inside a word: hyphens, apostrophes, abbreviation periods, and the zero-width (non-)joiners of Indic scripts.
_INNER_PUNCTUATION = set(_HYPHENS) | {"'", "\u2019", ".", "\u200c", "\u200d"}


@dataclass
class Entry:
    """One dictionary entry: its headword and the translation candidates of its sense lines."""

    headword: str
    translations: list[str] = field(default_factory=list)
    dropped_lines: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ the index


def decode_number(digits: str) -> int:
    """A FreeDict/dictd index number: base64 digits, most significant first (``BG`` = 1*64 + 6 = 70)."""
    if not digits:
        raise ValueError("empty number")
    value = 0
    for char in digits:
        if char not in _B64_VALUE:
            raise ValueError(f"{char!r} is not a base64 digit")
        value = value * 64 + _B64_VALUE[char]
    return value


def read_index(ctx: SourceContext, path: Path, size: int) -> list[tuple[str, int, int]]:
    """(key, offset, length) of every dictionary entry, each entry once, in index order."""
    entries, seen = [], set()
    text = decode_utf8(path.read_bytes(), path, ctx.stats)
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split("\t")
        try:
            if len(parts) != 3:
                raise ValueError(f"{len(parts)} tab-separated fields, expected 3")
            key, offset, length = parts[0], decode_number(parts[1]), decode_number(parts[2])
            if offset + length > size:
                raise ValueError(f"entry at {offset}+{length} runs past the {size}-byte dictionary")
        except ValueError as exc:
            ctx.stats.warn(f"{path}:{number}", f"bad index line: {exc}")
            ctx.stats.drop("bad_index_line")
            continue
        if key.startswith("00database") or key.startswith("00-database"):
            ctx.stats.skip("metadata_entry")
        elif (offset, length) in seen:
            ctx.stats.drop("duplicate_index_entry")  # dictd lists an entry under each of its keys
        else:
            seen.add((offset, length))
            entries.append((key, offset, length))
    return entries


def read_dictionary(path: Path) -> bytes:
    """The dictionary text as bytes (index offsets count bytes); ``.dz`` is dictzip, i.e. gzip."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".dz" else data


# ------------------------------------------------------------------------------------ entries


def parse_entry(text: str, target_script: str) -> Entry:
    """Headword and translation candidates of one entry; non-translation lines counted by reason."""
    lines = text.split("\n")
    entry = Entry(headword=_HEADER_END.split(lines[0].strip(), maxsplit=1)[0])
    for raw in lines[1:]:
        reason = _line_drop_reason(raw.strip(), target_script)
        if reason is None:
            entry.translations.extend(_candidates(raw))
        elif reason != "blank":
            entry.dropped_lines[reason] = entry.dropped_lines.get(reason, 0) + 1
    return entry


def _line_drop_reason(line: str, target_script: str) -> str | None:
    if not _SENSE_NUMBER.sub("", line).strip():
        return "blank"  # layout, or a lone sense number (jpn)
    if line.startswith(('"', "\u201c")):
        return "example_line"
    if _REFERENCE.match(line):
        return "reference_line"
    if target_script != "Latn" and not any(_is_letter(c) and not _is_latin(c) for c in line):
        return "gloss_line"  # an English gloss or sentence in a dictionary of a non-Latin script
    return None


def _candidates(line: str) -> Iterator[str]:
    line = _SENSE_NUMBER.sub("", line.strip())
    while (stripped := _BRACKETED.sub(" ", line)) != line:  # innermost first: ``([+ gen])``
        line = stripped
    for part in _SEPARATORS.split(line):
        yield normalize_word(part)


def normalize_word(text: str) -> str:
    """NFC, ``~``/``_`` as spaces, whitespace folded, one pair of enclosing quotes removed (``'Aeneid'``)."""
    word = clean_text(text.translate(_SPACE_MARKS))
    if len(word) >= 2 and word[0] in _QUOTES and word[-1] in _QUOTES:
        word = word[1:-1].strip()
    return word


def _is_letter(char: str) -> bool:
    return unicodedata.category(char).startswith("L")


def _is_latin(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN")


def script_of(lang: str) -> str:
    """The ISO 15924 script a language is usually written in (``ja`` → ``Jpan``, ``de`` → ``Latn``)."""
    return langcodes.Language.get(lang).maximize().script or "Latn"


def word_drop_reason(word: str, side: str) -> str | None:
    """Why one side of a pair is not a single word, or None."""
    if not word or " " in word:
        return f"multi_word_{side}"
    if word[0] in _AFFIX_MARKS or word[-1] in _AFFIX_MARKS:
        return "affix"
    if any(not (unicodedata.category(c)[0] in "LMN" or c in _INNER_PUNCTUATION) for c in word):
        return "non_word_character"
    if not any(_is_letter(c) for c in word):
        return "no_letters"
    return None


def pair_drop_reason(headword: str, translation: str, target_script: str) -> str | None:
    """The first reason a candidate pair is not a usable single-word gold pair, or None."""
    reason = word_drop_reason(headword, "headword") or word_drop_reason(translation, "translation")
    if reason:
        return reason
    latin = [_is_latin(c) for c in translation if _is_letter(c)]
    if (all(latin) if target_script != "Latn" else not all(latin)):
        return "wrong_script"
    if headword == translation:
        return "same_string"
    return None


# ------------------------------------------------------------------------------------ the stage


def find_dictionaries(raw_dir: Path) -> list[Path]:
    """Index files under ``raw_dir`` (``{package}/usr/share/dictd/`` from the deb adapter), sorted."""
    return sorted(raw_dir.rglob(INDEX_GLOB))


def _dictionary_file(index: Path) -> Path | None:
    stem = index.name[: -len(".index")]
    for name in (f"{stem}.dict.dz", f"{stem}.dict"):
        if (index.parent / name).is_file():
            return index.parent / name
    return None


def _language_pair(ctx: SourceContext, index: Path) -> tuple[str, str] | None:
    match = _NAME.match(index.name[: -len(".index")])
    if match is None:
        ctx.stats.warn(index, "not named freedict-<src>-<tgt>.index")
        ctx.stats.skip("unrecognised_file_name")
        return None
    src, tgt = (ctx.language_of(tag, index) for tag in match.groups())
    if src is None or tgt is None:
        return None
    if (src, tgt) not in ctx.pairs:
        ctx.stats.skip("pair_not_configured")  # e.g. a deu-eng dictionary: pairs go from the pivot
        return None
    return src, tgt


def read_pairs(ctx: SourceContext, index: Path, target_script: str) -> dict[tuple[str, str], None]:
    """Kept (headword, translation) pairs of one dictionary, in reading order, drops counted."""
    dictionary = _dictionary_file(index)
    if dictionary is None:
        ctx.stats.warn(index, "no .dict.dz or .dict beside the index")
        ctx.stats.skip("dictionary_missing")
        return {}
    data = read_dictionary(dictionary)
    pairs: dict[tuple[str, str], None] = {}
    for _key, offset, length in read_index(ctx, index, len(data)):
        text = decode_utf8(data[offset : offset + length], f"{dictionary}@{offset}", ctx.stats)
        entry = parse_entry(text, target_script)
        for reason, n in entry.dropped_lines.items():
            ctx.stats.drop(reason, n)
        headword = normalize_word(entry.headword)
        for translation in entry.translations:
            reason = pair_drop_reason(headword, translation, target_script)
            if reason is None and (headword, translation) in pairs:
                reason = "duplicate_pair"
            if reason:
                ctx.stats.drop(reason)
            else:
                pairs[(headword, translation)] = None
    return pairs


def extract(ctx: SourceContext, raw_dir: Path, out: OutputSet, threads: int = 1) -> None:
    indexes = find_dictionaries(raw_dir)
    if not indexes:
        ctx.stats.warn(raw_dir, f"no FreeDict index files ({INDEX_GLOB})")
        return
    # Two dictionaries of one language pair (a second package) merge into one output; first one wins.
    merged: dict[tuple[str, str], dict[tuple[str, str], str]] = {}
    for index in indexes:
        langs = _language_pair(ctx, index)
        doc_id = index.name[: -len(".index")]
        if langs is None or not ctx.cap_docs(langs[1], [doc_id]):
            continue
        kept = merged.setdefault(langs, {})
        for pair in read_pairs(ctx, index, script_of(langs[1])):
            if pair in kept:
                ctx.stats.drop("duplicate_pair")
            else:
                kept[pair] = doc_id
    for langs, kept in sorted(merged.items()):
        for headword, translation in sorted(kept):
            out.write_pair(_pair_row(ctx, langs, kept[(headword, translation)], headword, translation))


def _pair_row(ctx: SourceContext, langs: tuple[str, str], doc_id: str, headword: str,
              translation: str) -> dict[str, object]:
    src, tgt = langs
    group = headword.casefold()
    return {
        "row_id": f"{ctx.name}/{src}-{tgt}/{headword}/{translation}",
        "source": ctx.name,
        "src_lang": src,
        "tgt_lang": tgt,
        "src_row_id": f"{ctx.name}/{src}/{headword}",
        "tgt_row_id": f"{ctx.name}/{tgt}/{translation}",
        "doc_id": doc_id,
        "group": group,
        "split": ctx.split(group),
        "label": None,
        "src_text": headword,
        "tgt_text": translation,
    }
