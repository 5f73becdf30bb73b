"""End-to-end jobs built from the library: translation (more tasks arrive with their issues)."""
