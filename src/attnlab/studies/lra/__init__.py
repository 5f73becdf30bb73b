"""Long-Range-Arena-style accuracy benchmark (Tay et al., 2021) for the attention variants:
generated ListOps, key-value retrieval and pixel-sequence tasks (data.py, listops.py,
retrieval.py, pixels.py), the study (study.py) and its
report (report.py). `attnlab bench lra` runs it."""
