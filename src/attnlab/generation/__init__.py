"""Decoding for every generating model: greedy, sampling and beam search over one decoding
state per model kind, with shared, pure logits processors. `model.generate` (GenerationMixin)
is the interface; the functions below are its parts and the task-level entry points."""

from attnlab.generation.beam import BeamOutput, beam_search, length_penalty_gnmt
from attnlab.generation.greedy import greedy_decode
from attnlab.generation.mixin import (
    DECODER_ONLY,
    ENCODER_DECODER,
    ENCODER_ONLY,
    GENERATING_KINDS,
    MODEL_KINDS,
    GenerationMixin,
    model_kind,
)
from attnlab.generation.processors import (
    filter_top_k_top_p,
    logits_processor,
    penalize_repetition,
)
from attnlab.generation.sampling import generate, generate_steps, stream_text

__all__ = ["DECODER_ONLY", "ENCODER_DECODER", "ENCODER_ONLY", "GENERATING_KINDS", "MODEL_KINDS",
           "BeamOutput", "GenerationMixin", "beam_search", "filter_top_k_top_p", "generate",
           "generate_steps", "greedy_decode", "length_penalty_gnmt", "logits_processor",
           "model_kind", "penalize_repetition", "stream_text"]
