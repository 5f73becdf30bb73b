"""The one error policy: what a user did wrong is a `UserError`; anything else is our bug.

The CLI prints a `UserError` as one line (`attnlab CMD: error: ...`) and exits with 2; every
other exception keeps its traceback, so a bug in attnlab is never dressed up as bad input.
Each subclass also derives from the built-in exception that code and tests already catch
(ValueError, FileNotFoundError), so `except ValueError` keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a flag, a setting, a file or a folder. The message names the
    argument, the expected and the given value."""


class ConfigError(UserError, ValueError):
    """A setting or flag with a value outside what it accepts."""


class DataError(UserError, ValueError):
    """A problem with the user's data files, with a message saying where and what to do."""


class FolderError(UserError, ValueError):
    """A model folder whose files do not fit together (config, weights, tokenizer)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named, or one a folder must hold, is not there."""
