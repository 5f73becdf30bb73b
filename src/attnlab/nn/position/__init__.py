"""The POSITION registry: sinusoidal, learned, relative (T5 buckets), rope, alibi."""

from attnlab.nn.position import alibi, learned, relative, rope, sinusoidal  # noqa: F401
from attnlab.nn.position.alibi import ALiBi
from attnlab.nn.position.base import POSITION, PositionEncoding
from attnlab.nn.position.learned import LearnedPositionEncoding
from attnlab.nn.position.relative import RelativePositionBias, relative_position_bucket
from attnlab.nn.position.rope import RotaryEmbedding
from attnlab.nn.position.sinusoidal import SinusoidalPositionEncoding

__all__ = [
    "POSITION",
    "ALiBi",
    "LearnedPositionEncoding",
    "PositionEncoding",
    "RelativePositionBias",
    "RotaryEmbedding",
    "SinusoidalPositionEncoding",
    "relative_position_bucket",
]
