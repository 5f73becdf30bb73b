"""Evaluation: corpus BLEU and chrF through sacreBLEU (with its signature), by length bucket;
the trivial baselines (copy the source, the most frequent training target) a model must beat."""

from attnlab.evaluation.baselines import baseline_warning, beats_copy, translation_baselines
from attnlab.evaluation.bleu import LENGTH_BUCKETS, TranslationScores, bucket_bleu, score_corpus

__all__ = ["LENGTH_BUCKETS", "TranslationScores", "baseline_warning", "beats_copy",
           "bucket_bleu", "score_corpus", "translation_baselines"]
