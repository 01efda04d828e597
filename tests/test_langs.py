"""Language codes from every source meet in one canonical form."""

import pytest

from pipeline import langs


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("zh-cn", "zh-Hans"),  # LibreOffice
        ("zh_CN", "zh-Hans"),  # gettext
        ("cmn", "zh-Hans"),  # UDHR (ISO 639-3)
        ("zh_TW", "zh-Hant"),
        ("arb", "ar"),
        ("sr@latin", "sr-Latn"),
        ("sr", "sr-Cyrl"),
        ("en-US", "en"),
        ("en-GB", "en"),
        ("pt-BR", "pt"),
        ("deu", "de"),
        ("iw", "he"),
        ("de_DE.UTF-8", "de"),
        ("sq", "sq"),
        ("sr_RS@latin", "sr-Latn"),
        ("sr-Cyrl", "sr-Cyrl"),
        ("nb", "nb"),
        ("no", "no"),
        ("tl", "fil"),
        ("zh-Hant", "zh-Hant"),
        ("yue", "yue"),  # Cantonese is not Chinese-in-Hant
    ],
)
def test_canonical(tag: str, code: str) -> None:
    assert langs.canonical(tag) == code


@pytest.mark.parametrize("tag", ["xx", "qqq", "", "english"])
def test_unknown_codes_are_refused(tag: str) -> None:
    with pytest.raises(langs.UnknownLanguageError):
        langs.canonical(tag)


def test_unspaced_scripts() -> None:
    assert langs.is_unspaced("ja") and langs.is_unspaced("zh-Hans") and langs.is_unspaced("th")
    assert not langs.is_unspaced("de") and not langs.is_unspaced("hi")
