"""The espeak-ng spoken-words corpus: a small subset synthesised into a temporary cache, split
by speaker (test and valid speakers never in train), 16 kHz, cached, and the full word list."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from attnlab.data import audio, spoken_words
from attnlab.data.audio import load_audio
from attnlab.data.spoken_words import SpokenWordsSettings, speaker_split
from attnlab.errors import ConfigError, MissingFileError

SMALL = SpokenWordsSettings(words=("yes", "no", "stop"), voices=("en-us", "en"),
                            variants=("m1", "f2", "klatt", "croak"), speakers=8)
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (make packages)")


def test_the_full_set_has_twenty_words_and_enough_speakers():
    settings = spoken_words.DEFAULT_SETTINGS
    assert len(set(settings.words)) >= 20 and "yes" in settings.words
    assert settings.speakers <= len(settings.voices) * len(settings.variants)
    assert len(settings.words) * settings.speakers * settings.takes >= 3000


@needs_espeak
def test_small_corpus_is_synthesised_cached_and_split_by_speaker(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path))
    corpus = spoken_words.spoken_words(SMALL, progress=False)
    assert corpus.path == tmp_path / "spoken-words-v1" / f"{SMALL.key()}.npz"
    assert corpus.path.is_file() and corpus.words == SMALL.words
    assert corpus.waveforms.shape == (24, 16000) and corpus.waveforms.dtype == np.int16
    assert sorted(np.bincount(corpus.labels).tolist()) == [8, 8, 8]
    assert len(set(corpus.speakers)) == 8 and all("+" in s for s in corpus.speakers)
    peaks = np.abs(corpus.waveforms).max(axis=1) / 32767
    assert peaks.min() > 0.2 and peaks.max() < 0.95  # speech with noise, scaled, not clipped
    # the second call reads the cache: synthesis is not run again
    monkeypatch.setattr(spoken_words, "_synthesise", None)
    again = spoken_words.spoken_words(SMALL)
    assert np.array_equal(again.waveforms, corpus.waveforms)
    # load_audio's builtin:spoken-words, on the small settings
    monkeypatch.setattr(spoken_words, "DEFAULT_SETTINGS", SMALL)
    splits = load_audio("builtin:spoken-words", valid_fraction=0.1, seed=0)
    speakers = {name: set(s.speakers) for name, s in splits.items()}
    assert all(speakers.values()) and sum(len(s) for s in splits.values()) == 24
    assert not speakers["train"] & (speakers["test"] | speakers["valid"])
    assert not speakers["test"] & speakers["valid"]
    for split in splits.values():
        assert split.classes == list(SMALL.words)
        assert all(w.shape == (16000,) and w.dtype.is_floating_point for w in split.waveforms)
        assert split.sample_rates == [16000] * len(split)
    slow = load_audio("builtin:spoken-words", sample_rate=8000)["test"]
    assert slow.waveforms[0].shape == (8000,)


@needs_espeak
def test_synthesis_is_deterministic(tmp_path, monkeypatch):
    tiny = SpokenWordsSettings(words=("go", "no"), voices=("en-us",), variants=("m3", "f1", "m7"),
                               speakers=3)
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "a"))
    a = spoken_words.spoken_words(tiny, progress=False)
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "b"))
    b = spoken_words.spoken_words(tiny, progress=False, workers=1)
    assert np.array_equal(a.waveforms, b.waveforms) and a.speakers == b.speakers


def test_a_changed_setting_changes_the_cache_key():
    assert SMALL.key() != SpokenWordsSettings(**{**SMALL.__dict__, "seed": 1}).key()
    assert SMALL.key() == SpokenWordsSettings(**SMALL.__dict__).key()


def test_speaker_split_holds_out_whole_speakers():
    speakers = [f"v+{i}" for i in range(50) for _ in range(4)]
    a, b = speaker_split(speakers, 0.1, seed=0), speaker_split(speakers, 0.1, seed=1)
    assert sorted(a["train"] + a["valid"] + a["test"]) == list(range(200))
    assert [len(a[s]) // 4 for s in ("train", "valid", "test")] == [35, 5, 10]
    names = {s: {speakers[i] for i in rows} for s, rows in a.items()}
    assert not names["train"] & names["test"] and not names["train"] & names["valid"]
    assert a["test"] == b["test"] and a["valid"] != b["valid"]  # test fixed, valid seeded


def test_missing_espeak_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(spoken_words.shutil, "which", lambda name: None)
    with pytest.raises(MissingFileError, match="apt-get install espeak-ng"):
        spoken_words.spoken_words(SMALL)


def test_bad_settings():
    with pytest.raises(ConfigError, match="speakers"):
        spoken_words.spoken_words(SpokenWordsSettings(voices=("en",), variants=("m1",)))
    assert audio.BUILTIN_AUDIO_SETS == ("spoken-words",)
