"""Expected failures: errors a user can fix, printed by the CLI as one or two lines without a traceback.

Every error class here (and :class:`erc.core.config.ConfigError`, its subclass
``EncoderLoadError``, and ``erc.data.validate.DataValidationError``) carries a
message that names the file, the field and what was expected. ``erc.cli`` prints
it and exits with status 2; ``--debug`` (or ``ERC_DEBUG=1``) shows the traceback.
"""
from __future__ import annotations


class ErcError(Exception):
    """Base of the expected failures (bad input, unreadable files, unwritable outputs)."""


class FileFormatError(ErcError, ValueError):
    """A file that exists but cannot be read as what it should be (corrupt, truncated, wrong kind)."""


class OutputNotWritableError(ErcError, OSError):
    """An output path that cannot be written; raised before any work is done."""
