"""The MIXER registry: sequence mixers that may replace attention, each one file.

    from attnlab.nn.mixers import MIXER
    mixer = MIXER.build("mamba", d_model=256)
    out, _, state = mixer(x, mask=mask, causal=True, cache=RecurrentState())

Every entry follows the attention call contract (`base.py`) with a fixed-size
`RecurrentState` (nn/cache.py) in place of a KV cache, and computes the same function in the
forms it lists (parallel / chunkwise / recurrent).
"""

# importing a mixer module registers it: "lstm", "mamba", "retention", "rwkv"
from attnlab.nn.mixers import lstm, mamba, retention, rwkv  # noqa: F401
from attnlab.nn.mixers.base import MIXER, SequenceMixer, token_mask, zero_padding

__all__ = ["MIXER", "SequenceMixer", "token_mask", "zero_padding"]
