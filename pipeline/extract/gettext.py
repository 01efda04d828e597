"""gettext catalogs (.mo, .po): msgid → msgstr pairs with the pivot (English) as source side.

Catalogs sit at ``usr/share/locale/{locale}/LC_MESSAGES/{domain}.mo`` (or ``.po``); a loose
``{domain}/{locale}.po`` is read too.  polib reads both formats and keeps ``msgctxt`` and
``msgid_plural`` apart (the stdlib ``gettext`` module drops the plural msgid).

Rows, per catalog of a configured language (one locale per language: ``pt`` before ``pt_BR``):
- a pair (msgid, msgstr[0]) and, for plural entries, (msgid_plural, msgstr[1]) when different;
- the msgstr as a monolingual row of the language;
- the msgid as an English monolingual row, once per (domain, msgid).
The split group is the msgid alone (without context, accelerators stripped), so an identical
string has one split in every catalog and language; both forms of a plural entry share it.  Accelerators (``_File``, ``&File``, ``文件(_F)``) are stripped;
format placeholders are left as they are.  Untranslated (empty) and fuzzy entries are dropped,
identical pairs are not made (both counted).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import polib
from tqdm import tqdm

from pipeline.extract.common import OutputSet, SourceContext, choose_variants, clean_text

LOCALE_DIR = "usr/share/locale"
# ``(_F)`` / ``(&F)`` after CJK labels; a mnemonic ``_``/``&`` is otherwise any that precedes a letter.
_PAREN_ACCEL = re.compile(r"\s*\([_&][^\W_]\)")
_MNEMONIC = {"_": re.compile(r"_(?=[^\W_])"), "&": re.compile(r"&(?=[^\W_])(?!#?\w+;)")}
_WORD_AROUND = re.compile(r"\w*$"), re.compile(r"^\w*")
_CONSTANT = re.compile(r"[A-Z0-9]+(?:_[A-Z0-9]+)+")

@dataclass(frozen=True)
class Catalog:
    """One catalog file: where it is, its domain, and the locale (source tag) it is for."""

    path: Path
    domain: str
    locale: str


@dataclass(frozen=True)
class Message:
    """One translatable string: (key, English text, translation) after accelerators are stripped."""

    key: str  # stable block id within the domain: context, English text, plural form
    group: str  # the split group: the entry's (singular) msgid, accelerators stripped
    source: str
    target: str


def strip_accelerators(text: str) -> str:
    """``_Open`` → ``Open``, ``Be_fore`` → ``Before``, ``&Save`` → ``Save``, ``打开(_O)`` → ``打开``.

    One mnemonic per string (GTK and Qt allow one); ``__``/``&&`` stand for the character itself.
    Identifiers keep their underscores: ``GDK_DEBUG``, ``child_displacement_x``.
    """
    text = _PAREN_ACCEL.sub("", text)
    for mark, pattern in _MNEMONIC.items():
        if mark not in text:
            continue
        escaped = text.replace(mark * 2, "\x00")
        for match in pattern.finditer(escaped):
            i = match.start()
            token = _WORD_AROUND[0].search(escaped[:i])[0] + mark + _WORD_AROUND[1].search(escaped[i + 1 :])[0]
            if mark == "_" and (token.count("_") > 1 or _CONSTANT.fullmatch(token)):
                continue
            escaped = escaped[:i] + escaped[i + 1 :]
            break
        text = escaped.replace("\x00", mark)
    return text


def message_key(msgctxt: str | None, msgid: str, plural: bool = False) -> str:
    """A short stable id of a message (the msgid can be long and hold any character)."""
    raw = f"{msgctxt or ''}\x04{msgid}\x00{'p' if plural else ''}"
    return hashlib.blake2b(raw.encode("utf-8"), digest_size=8).hexdigest()


def find_catalogs(raw_dir: Path) -> list[Catalog]:
    """Every .mo/.po catalog under raw_dir, sorted by path."""
    catalogs = []
    for path in sorted(raw_dir.rglob("*")):
        if path.suffix not in (".mo", ".po") or not path.is_file():
            continue
        if path.parent.name == "LC_MESSAGES":
            catalogs.append(Catalog(path, path.stem, path.parent.parent.name))
        elif path.suffix == ".po":
            catalogs.append(Catalog(path, path.parent.name, path.stem))
    return catalogs


def read_messages(ctx: SourceContext, catalog: Catalog) -> list[Message]:
    """The messages of one catalog; a malformed file gives a warning naming it and no messages."""
    try:
        entries = polib.mofile(str(catalog.path)) if catalog.path.suffix == ".mo" else polib.pofile(str(catalog.path))
    except Exception as exc:  # noqa: BLE001 - polib raises struct.error, OSError, ValueError, UnicodeError...
        ctx.stats.warn(catalog.path, f"malformed catalog, skipped: {type(exc).__name__}: {exc}")
        ctx.stats.skip("malformed_catalog")
        return []
    messages: list[Message] = []
    for entry in entries:
        if not entry.msgid:  # the catalog header, not a message
            continue
        if entry.obsolete:
            ctx.stats.drop("obsolete")
            continue
        if "fuzzy" in entry.flags:
            ctx.stats.drop("fuzzy")
            continue
        messages.extend(_entry_messages(ctx, entry))
    return messages


def _entry_messages(ctx: SourceContext, entry: polib._BaseEntry) -> list[Message]:
    if entry.msgid_plural:
        forms = [(entry.msgid, entry.msgstr_plural.get(0, ""), False),
                 (entry.msgid_plural, entry.msgstr_plural.get(1, ""), True)]
        # Forms 2.. (ru, pl, ar...) have no English counterpart to pair with.
        ctx.stats.drop("extra_plural_form", max(0, len(entry.msgstr_plural) - 2))
    else:
        forms = [(entry.msgid, entry.msgstr, False)]
    group = clean_text(strip_accelerators(entry.msgid))
    messages, seen = [], set()
    for source, target, plural in forms:
        source, target = clean_text(strip_accelerators(source)), clean_text(strip_accelerators(target))
        if not target:
            ctx.stats.drop("untranslated")
            continue
        if not source or (source, target) in seen:
            ctx.stats.drop("duplicate_plural_form" if source else "empty")
            continue
        seen.add((source, target))
        messages.append(Message(message_key(entry.msgctxt, source, plural), group, source, target))
    return messages


def choose_catalogs(ctx: SourceContext, catalogs: list[Catalog]) -> dict[str, dict[str, Catalog]]:
    """domain → canonical code → the one catalog to read (most direct locale, first package)."""
    by_domain: dict[str, dict[str, dict[str, Catalog]]] = {}
    for catalog in catalogs:
        code = ctx.language_of(catalog.locale, catalog.path)
        if code is None:
            continue
        if code == ctx.pivot:  # en_GB, en@shaw...: the msgids already are the pivot text
            ctx.stats.skip("pivot_locale_catalog")
            continue
        per_locale = by_domain.setdefault(catalog.domain, {}).setdefault(code, {})
        if catalog.locale in per_locale:
            ctx.stats.skip("duplicate_catalog")
            ctx.stats.warn(catalog.path, f"second catalog of {catalog.domain}/{catalog.locale}; using {per_locale[catalog.locale].path}")
            continue
        per_locale[catalog.locale] = catalog
    chosen: dict[str, dict[str, Catalog]] = {}
    for domain, per_code in sorted(by_domain.items()):
        tags = choose_variants({code: list(c) for code, c in per_code.items()}, ctx.stats, f"{domain} locale")
        chosen[domain] = {code: per_code[code][tag] for code, tag in tags.items()}
    return chosen


def extract(ctx: SourceContext, raw_dir: Path, out: OutputSet, threads: int = 1) -> None:
    chosen = choose_catalogs(ctx, find_catalogs(raw_dir))
    if not chosen:
        ctx.stats.warn(raw_dir, "no gettext catalog (.mo/.po) of a configured language")
        return
    kept = {code: set(ctx.cap_docs(code, [d for d, per in chosen.items() if code in per])) for code in ctx.languages}
    for domain in tqdm(sorted(chosen), desc=f"extract {ctx.name}", unit="catalog", leave=False):
        pivot_rows: dict[str, dict] = {}  # English rows of this domain, by text
        for code, catalog in sorted(chosen[domain].items()):
            if domain in kept[code]:
                _write_catalog(ctx, out, domain, code, read_messages(ctx, catalog), pivot_rows)
        if pivot_rows:
            ctx.stats.docs[ctx.pivot] += 1


def _write_catalog(ctx: SourceContext, out: OutputSet, domain: str, code: str, messages: list[Message],
                   pivot_rows: dict[str, dict]) -> None:
    with_pivot = ctx.pivot in ctx.languages
    for message in messages:
        tgt = ctx.mono_row(code, domain, message.key, message.group, message.target)
        out.write_mono(tgt)
        if not with_pivot:
            continue
        src = pivot_rows.get(message.source)
        if src is None:  # the English text once per (domain, text), whatever its contexts
            key = message_key(None, message.source)
            src = pivot_rows[message.source] = ctx.mono_row(ctx.pivot, domain, key, message.group, message.source)
            out.write_mono(src)
        if (ctx.pivot, code) not in ctx.pairs:
            continue
        if message.source == message.target:
            ctx.stats.drop("identical")
        else:
            out.write_pair(ctx.pair_row(src, tgt, message.key))
