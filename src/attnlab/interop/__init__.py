"""Moved: the Hugging Face layouts live in `attnlab.io.hf`, folder loading and saving in
`attnlab.io` (this package re-exports the old names for one release; see CHANGELOG.md)."""
