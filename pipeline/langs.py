"""Canonical language codes, shared by every stage.

LibreOffice writes ``zh-cn``, gettext ``zh_CN`` and UDHR ``cmn``; they all have to meet.  The
canonical code is the language subtag of the BCP 47 tag that ``langcodes.standardize_tag(tag,
macro=True)`` returns, plus the script subtag for the few languages that are written in two scripts
(``zh-Hans``/``zh-Hant``, ``sr-Latn``/``sr-Cyrl``).  Which LID model labels stand for a canonical code
is pipeline.lid's business (an explicit map read from the model).
"""

from __future__ import annotations

import functools
import re

import langcodes

from pipeline.errors import PolyforgeError

# Languages whose canonical code keeps the script subtag, because they are written in two.
TWO_SCRIPT_LANGUAGES = frozenset({"zh", "sr"})
# Their two scripts: Serbian's are told apart by the text's own letters; Chinese's are both Han.
SCRIPT_VARIANTS = {"sr": ("Latn", "Cyrl"), "zh": ("Hans", "Hant")}
# The Unicode scripts (as RE2's \p{...} names them) whose letters write text in an ISO 15924 script.
SCRIPT_LETTERS = {
    "Latn": ("Latin",), "Cyrl": ("Cyrillic",), "Grek": ("Greek",), "Armn": ("Armenian",), "Geor": ("Georgian",),
    "Hans": ("Han",), "Hant": ("Han",), "Hani": ("Han",), "Jpan": ("Han", "Hiragana", "Katakana"),
    "Kore": ("Hangul", "Han"), "Arab": ("Arabic",), "Hebr": ("Hebrew",), "Thai": ("Thai",), "Laoo": ("Lao",),
    "Khmr": ("Khmer",), "Mymr": ("Myanmar",), "Tibt": ("Tibetan",), "Ethi": ("Ethiopic",), "Deva": ("Devanagari",),
    "Beng": ("Bengali",), "Guru": ("Gurmukhi",), "Gujr": ("Gujarati",), "Orya": ("Oriya",), "Taml": ("Tamil",),
    "Telu": ("Telugu",), "Knda": ("Kannada",), "Mlym": ("Malayalam",), "Sinh": ("Sinhala",),
}  # fmt: skip

# gettext-style modifiers that name a script (``sr@latin``, ``uz@cyrillic``).
_MODIFIER_SCRIPTS = {"latin": "Latn", "cyrillic": "Cyrl", "devanagari": "Deva"}

# Scripts written without spaces between words: reports count characters, not words.
UNSPACED_SCRIPTS = frozenset({"Hans", "Hant", "Hani", "Jpan", "Hira", "Kana", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"})


class UnknownLanguageError(PolyforgeError, ValueError):
    """A language tag that no standard knows."""


@functools.lru_cache(maxsize=4096)
def canonical(tag: str) -> str:
    """Return the canonical code for any tag: ``zh_CN`` → ``zh-Hans``, ``arb`` → ``ar``."""
    raw = tag.strip()
    modifier_script = None
    if "@" in raw:
        raw, modifier = raw.split("@", 1)
        modifier_script = _MODIFIER_SCRIPTS.get(modifier.lower())
    raw = raw.replace("_", "-")
    # gettext/POSIX suffixes such as ``.UTF-8`` carry no language information.
    raw = re.sub(r"\.[A-Za-z0-9-]+$", "", raw)
    if not raw or not langcodes.tag_is_valid(raw):
        raise UnknownLanguageError(f"unknown language code {tag!r}")
    lang = langcodes.Language.get(langcodes.standardize_tag(raw, macro=True))
    if not lang.is_valid() or _is_private_use(lang.language):
        raise UnknownLanguageError(f"unknown language code {tag!r}")
    if lang.language not in TWO_SCRIPT_LANGUAGES:
        return lang.language
    script = modifier_script or lang.script or lang.maximize().script
    return f"{lang.language}-{script}"


def _is_private_use(subtag: str | None) -> bool:
    return subtag is None or (len(subtag) == 3 and "qaa" <= subtag <= "qtz")


def is_known(tag: str) -> bool:
    try:
        canonical(tag)
    except UnknownLanguageError:
        return False
    return True


def script_of(code: str) -> str:
    """The (likely) script of a canonical code, e.g. ``ja`` → ``Jpan``, ``ru`` → ``Cyrl``."""
    return langcodes.Language.get(code).maximize().script or "Zyyy"


def is_unspaced(code: str) -> bool:
    """True where words are not separated by spaces, so reports count characters."""
    return script_of(code) in UNSPACED_SCRIPTS
