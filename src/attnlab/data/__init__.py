"""Data: built-in synthetic tasks (the translation corpus and file loaders come later)."""
