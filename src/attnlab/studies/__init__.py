"""Measured comparisons built on the tasks: Transformer vs RNN vs ConvS2S (compare/), the
efficient attention variants' cost and error (attention_bench*.py) and their Long-Range-Arena
style accuracy (lra/). Each writes its results with the machine they came from."""
