"""Deprecated since 0.5.0, removed in 1.0.0: import from the package itself instead,
`from <package> import summarise_sample`. Source modules written before 0.5.0 import from here."""

from ._runtime.sample_data import summarise_sample

__all__ = ["summarise_sample"]
