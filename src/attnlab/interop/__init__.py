"""Hugging Face interop: config and state-dict mapping per family (see gpt2.py)."""
