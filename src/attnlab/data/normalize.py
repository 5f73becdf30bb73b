"""Unicode normalisation of corpus text (Unicode Standard Annex #15, "Unicode Normalization
Forms"), through Python's `unicodedata`.

The same word can reach a corpus as different code points: "é" precomposed (U+00E9) or as "e"
plus a combining acute accent (U+0065 U+0301, what some macOS tools write). Without
normalisation the two spellings become different subwords and a model sees them as different
words. NFC composes them (canonical equivalence only: the text looks the same); NFKC also folds
compatibility characters (the ligature "ﬁ" -> "fi", full-width "Ａ" -> "A", "²" -> "2", a
no-break space -> " "), which changes how some text looks; "none" keeps the text as it is.

Deliberately minimal: only the Unicode form changes. Nothing else is done to whitespace
(inside a line or at its ends; NFKC's own folds aside), case or punctuation; line endings are
the reader's job (`data.parallel.read_lines` drops the "\\n" and a trailing "\\r"). Both
forms are idempotent: normalize_text(normalize_text(t, f), f) == normalize_text(t, f).
"""

from __future__ import annotations

import unicodedata

from attnlab.errors import ConfigError

NORMAL_FORMS = ("nfc", "nfkc", "none")


def check_normal_form(form: str, argument: str = "normalize") -> str:
    """`form` when it is one of NORMAL_FORMS; ConfigError naming `argument` otherwise."""
    if form not in NORMAL_FORMS:
        raise ConfigError(f"{argument} must be one of {', '.join(NORMAL_FORMS)}, got {form!r}")
    return form


def normalize_text(text: str, form: str = "nfc") -> str:
    """`text` in Unicode normal form `form` ("nfc", "nfkc"), or unchanged for "none"."""
    check_normal_form(form)
    return text if form == "none" else unicodedata.normalize(form.upper(), text)
