"""Evaluation: corpus BLEU and chrF through sacreBLEU (with its signature), by length bucket."""

from attnlab.evaluation.bleu import LENGTH_BUCKETS, TranslationScores, bucket_bleu, score_corpus

__all__ = ["LENGTH_BUCKETS", "TranslationScores", "bucket_bleu", "score_corpus"]
