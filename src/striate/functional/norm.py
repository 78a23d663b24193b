"""Placeholder: filled in by the norm family."""

__all__: list[str] = []
