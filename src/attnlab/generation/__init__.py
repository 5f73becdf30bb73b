"""Decoding: greedy and beam search for encoder-decoder models, greedy and sampled generation
for decoder-only ones."""

from attnlab.generation.beam import BeamOutput, beam_search, length_penalty_gnmt
from attnlab.generation.greedy import greedy_decode
from attnlab.generation.sampling import (
    filter_top_k_top_p,
    generate,
    generate_steps,
    penalize_repetition,
    stream_text,
)

__all__ = ["BeamOutput", "beam_search", "filter_top_k_top_p", "generate", "generate_steps",
           "greedy_decode", "length_penalty_gnmt", "penalize_repetition", "stream_text"]
