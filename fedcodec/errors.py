"""Exceptions of fedcodec."""

from __future__ import annotations


class DecodeError(ValueError):
    """A payload is malformed, truncated, corrupted or does not match what the caller expects.

    Servers decode bytes from clients they do not control: every decoding failure, whatever
    its cause, is reported as this exception, never as an ``IndexError``, a crash or a hang.
    """


class UnknownCodecError(ValueError):
    """No codec is registered under the requested id."""
