"""The error type for bad input: a config, path or value the user can fix."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input, found before any work starts; the message names the culprit."""
