"""The one exception every data source raises for a file it cannot trust."""

from __future__ import annotations

__all__ = ["DataError", "missing_extra"]


class DataError(ValueError):
    """A data file is malformed, truncated, inconsistent or refused.

    The message always names the file (or directory) and the numbers that disagree, e.g.
    ``train-labels-idx1-ubyte: header declares 60000 items (60000 payload bytes), file holds 59990``.
    """


def missing_extra(package: str, what: str) -> ImportError:
    """The ImportError raised when an optional dependency of a data source is not installed."""
    return ImportError(
        f"{what} needs the optional package {package!r}, which is not installed; "
        f"install the data extra: pip install 'striate[data]' (or pip install {package})"
    )
