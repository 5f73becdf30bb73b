"""Unicode normal forms (UAX #15) of corpus text: NFC composes, NFKC also folds compatibility
characters, "none" changes nothing; every form is idempotent; a bad form is a ConfigError."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.data.normalize import NORMAL_FORMS, normalize_text
from attnlab.errors import ConfigError

# Text rich in what normalisation touches: combining marks (Mn), Hangul jamo, compatibility
# characters (ligatures, full-width forms, superscripts), next to ordinary letters.
TRICKY = st.text(alphabet=st.one_of(
    st.characters(whitelist_categories=("Mn", "Ll", "Lu", "Lo", "No", "Zs", "Po")),
    st.sampled_from("e\u0301\u0323\u1100\u1161\u11a8\ufb01\uff21\u00b2\u212b\u2126\u0344")),
    max_size=30)


def test_nfc_composes_a_decomposed_accent():
    assert normalize_text("e\u0301", "nfc") == "\u00e9" == "é"
    assert normalize_text("cafe\u0301 au lait", "nfc") == "café au lait"
    assert normalize_text("e\u0301", "none") == "e\u0301"


def test_nfkc_also_folds_compatibility_characters_nfc_does_not():
    assert normalize_text("\ufb01le \uff21 x\u00b2\u00a0", "nfkc") == "file A x2 "
    assert normalize_text("\ufb01le \uff21 x\u00b2\u00a0", "nfc") == "\ufb01le \uff21 x\u00b2\u00a0"


def test_only_the_unicode_form_changes():
    text = "  two  spaces\tand a tab, Case, no-break\u00a0space \r"
    for form in NORMAL_FORMS:
        assert normalize_text(text, form) == (text if form != "nfkc" else
                                              text.replace("\u00a0", " "))


@settings(max_examples=300, deadline=None)
@given(TRICKY)
def test_every_form_is_idempotent_and_none_is_identity(text):
    assert normalize_text(text, "none") is text
    for form in ("nfc", "nfkc"):
        once = normalize_text(text, form)
        assert normalize_text(once, form) == once
        assert unicodedata.is_normalized(form.upper(), once)


@pytest.mark.parametrize("form", ["NFC", "nfd", "", "utf-8"])
def test_a_bad_form_names_the_argument_and_the_choices(form):
    with pytest.raises(ConfigError, match=rf"normalize must be one of nfc, nfkc, none, got "
                                          rf"'{form}'"):
        normalize_text("a", form)
