"""The error types for bad input: a config, path, value or data the user can fix."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input, found before any work starts; the message names the culprit."""


class DataError(ConfigError):
    """Data that can't be used as stored: the message names the array and the place.

    A raw chunk missing from the store, a chunk that does not decode, metadata that
    is not JSON, NaN or infinity in raw, labels without any object. Raised by the
    checks run before a run exists (:func:`dacapo_hydra.data.checks.check_split`),
    and by array reads that hit an undecodable chunk later.
    """
