"""The `attnlab` command line."""
