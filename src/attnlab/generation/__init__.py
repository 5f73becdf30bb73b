"""Decoding: greedy search for encoder-decoder models (beam search and sampling come later)."""

from attnlab.generation.beam import BeamOutput, beam_search, length_penalty_gnmt
from attnlab.generation.greedy import greedy_decode

__all__ = ["BeamOutput", "beam_search", "greedy_decode", "length_penalty_gnmt"]
