"""attnlab: attention and the Transformer, from Bahdanau (2014) to efficient variants."""

__version__ = "0.1.0"


def from_pretrained(directory):
    """Load a model from a local folder written by Hugging Face `transformers` or attnlab."""
    from attnlab.interop.hf_folder import from_pretrained as load

    return load(directory)
