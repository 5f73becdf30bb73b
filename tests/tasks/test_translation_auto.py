"""The `auto` choices of a translation run (tasks/translation_auto.py)."""

from __future__ import annotations

from attnlab.tasks.translation_auto import choose_max_len, choose_preset, choose_vocab_size


def test_short_cpu_budgets_get_the_small_fast_model():
    assert choose_preset(30_000, 600.0, "cpu").value == "transformer-mini"
    assert choose_preset(30_000, None, "cpu").value == "transformer-small"
    assert choose_preset(5_000, None, "cpu").value == "transformer-mini"
    assert choose_preset(4_500_000, None, "cuda").value == "transformer-base"
    assert choose_preset(200_000, 3600.0, "cuda").value == "transformer-small"
    assert "600s budget" in choose_preset(30_000, 600.0, "cpu").reason
    # An auto-chosen bigger preset is pre-norm (the budget schedule's peak needs it).
    assert choose_preset(30_000, None, "cpu").overrides == {"norm_first": True}
    assert choose_preset(30_000, 600.0, "cpu").overrides == {}  # mini is pre-norm already


def test_vocabulary_grows_with_the_corpus_within_bounds():
    assert choose_vocab_size(10_000).value == 2000
    assert choose_vocab_size(1_400_000).value == 4000
    assert choose_vocab_size(250_000_000).value == 32_000
    sizes = [choose_vocab_size(n).value for n in (10**4, 10**5, 10**6, 10**7, 10**8)]
    assert sizes == sorted(sizes)


def test_length_cap_is_a_high_percentile_and_counts_what_it_drops():
    lengths = [10] * 995 + [300] * 5
    choice = choose_max_len(lengths)
    assert choice.value == 16  # 99.5th percentile (10), rounded up to a multiple of 8
    assert "drops 5 of 1,000" in choice.reason
    assert choose_max_len([7, 9, 12]).value == 16
