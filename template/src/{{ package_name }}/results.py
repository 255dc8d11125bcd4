"""Deprecated since 0.5.0, removed in 1.0.0: import from the package itself instead,
`from <package> import SourceSummary`. Source modules written before 0.5.0 import from here."""

from ._runtime.results import SourceResult, SourceSummary

__all__ = ["SourceResult", "SourceSummary"]
