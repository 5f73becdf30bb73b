"""A run on a prepared folder records every file of it in its data fingerprint, so --resume
refuses a folder prepared again from other text (training/run_folder.py, unchanged)."""

from __future__ import annotations

from attnlab.tasks.language_model import LMSettings
from attnlab.tasks.lm_prepare import prepare_text
from attnlab.training.run_folder import fingerprint, fingerprint_differences


def test_the_fingerprint_covers_a_prepared_folder(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("one two three\nfour five\n" * 30)
    out = tmp_path / "prepared"
    prepare_text(text, out, tokenizer="chars", vocab_size=40, progress=False)
    settings = LMSettings(text=str(out), out=str(tmp_path / "run"))
    before = fingerprint(settings)
    assert sorted(before["text"]["files"]) == ["prepared.json", "text.ids.bin",
                                               "text.offsets.bin", "tokenizer.json"]
    text.write_text("one two three\nfour five six\n" * 30)
    prepare_text(text, out, tokenizer="chars", vocab_size=40, overwrite=True, progress=False)
    changes = fingerprint_differences(before, fingerprint(settings))
    assert any("text.ids.bin changed (size" in change for change in changes), changes
