"""Positional encodings, one file each, registered in POSITION: sinusoidal, sinusoidal_split
(Marian's layout), learned, relative (T5 buckets), rope, alibi. Importing this package
registers all of them."""

from attnlab.nn.position.alibi import ALiBi, alibi_slopes
from attnlab.nn.position.base import KINDS, POSITION, PositionEncoding
from attnlab.nn.position.learned import LearnedPositionEncoding
from attnlab.nn.position.relative import RelativePositionBias, relative_position_bucket
from attnlab.nn.position.rope import RotaryEmbedding, rotate_half
from attnlab.nn.position.sinusoidal import SinusoidalPositionEncoding, sinusoidal_table
from attnlab.nn.position.sinusoidal_split import (
    SplitSinusoidalPositionEncoding,
    split_sinusoidal_table,
)

__all__ = [
    "KINDS",
    "POSITION",
    "ALiBi",
    "LearnedPositionEncoding",
    "PositionEncoding",
    "RelativePositionBias",
    "RotaryEmbedding",
    "SinusoidalPositionEncoding",
    "SplitSinusoidalPositionEncoding",
    "alibi_slopes",
    "relative_position_bucket",
    "rotate_half",
    "sinusoidal_table",
    "split_sinusoidal_table",
]
