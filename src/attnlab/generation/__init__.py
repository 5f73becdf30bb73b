"""Decoding: greedy search for encoder-decoder models (beam search and sampling come later)."""

from attnlab.generation.greedy import greedy_decode

__all__ = ["greedy_decode"]
