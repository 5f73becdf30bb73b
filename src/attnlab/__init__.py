"""attnlab: attention and the Transformer, from Bahdanau (2014) to efficient variants."""

__version__ = "0.1.0"
