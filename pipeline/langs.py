"""Canonical language codes, shared by every stage.

LibreOffice writes ``zh-cn``, gettext ``zh_CN``, UDHR ``cmn`` and fastText ``zh``; they all
have to meet.  The canonical code is the language subtag of the BCP 47 tag that
``langcodes.standardize_tag(tag, macro=True)`` returns, plus the script subtag for the few
languages that are written in two scripts (``zh-Hans``/``zh-Hant``, ``sr-Latn``/``sr-Cyrl``).
"""

from __future__ import annotations

import functools
import re

import langcodes

# Languages whose canonical code keeps the script subtag, because they are written in two.
TWO_SCRIPT_LANGUAGES = frozenset({"zh", "sr"})

# gettext-style modifiers that name a script (``sr@latin``, ``uz@cyrillic``).
_MODIFIER_SCRIPTS = {"latin": "Latn", "cyrillic": "Cyrl", "devanagari": "Deva"}

# The 176 labels of fastText's lid.176 model (the default language-ID model).
LID176_LABELS = frozenset(
    "af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce "
    "ceb ckb co cs cv cy da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl "
    "gn gom gu gv he hi hif hr hsb ht hu hy ia id ie ilo io is it ja jbo jv ka kk km kn ko "
    "krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min mk ml mn mr mrj ms mt mwl "
    "my myv mzn nah nap nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru "
    "rue sa sah sc scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk "
    "ur uz vec vep vi vls vo wa war wuu xal xmf yi yo yue zh".split()
)

# Scripts written without spaces between words: reports count characters, not words.
UNSPACED_SCRIPTS = frozenset({"Hans", "Hant", "Hani", "Jpan", "Hira", "Kana", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"})


class UnknownLanguageError(ValueError):
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


@functools.lru_cache(maxsize=1)
def _lid176_by_canonical() -> dict[str, str]:
    table: dict[str, str] = {}
    for label in sorted(LID176_LABELS):
        try:
            table.setdefault(canonical(label), label)
        except UnknownLanguageError:
            continue
    return table


def lid_label(code: str, overrides: dict[str, str] | None = None) -> str | None:
    """The LID model's label for a canonical code (``zh-Hans`` → ``zh``), or None if it has none.

    ``overrides`` is the explicit map from config (``lid_labels``), for models other than lid.176.
    """
    if overrides and code in overrides:
        return overrides[code]
    table = _lid176_by_canonical()
    if code in table:
        return table[code]
    base = code.split("-")[0]
    return base if base in LID176_LABELS else table.get(base)


def label_to_canonical(label: str) -> str:
    """Turn a fastText label (``__label__zh`` or ``zh``) into a canonical code where possible."""
    bare = label.removeprefix("__label__")
    try:
        return canonical(bare)
    except UnknownLanguageError:
        return bare
