"""attnlab: attention and the Transformer, from Bahdanau (2014) to efficient variants."""

from pathlib import Path

from attnlab.version import __version__


def from_pretrained(directory: str | Path):
    """The model in a local folder written by Hugging Face `transformers` or attnlab, or in a
    llama.cpp `.gguf` file of the LLaMA family (4-bit Q4_0 / Q4_1 projections kept 4-bit, the
    rest dequantized to float32), in eval mode; nothing is downloaded."""
    from attnlab.models.auto import from_pretrained as load

    return load(directory)


__all__ = ["__version__", "from_pretrained"]
