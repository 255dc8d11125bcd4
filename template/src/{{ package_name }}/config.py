"""Deprecated since 0.5.0, removed in 1.0.0: import from the package itself instead,
`from <package> import Source`. Source modules written before 0.5.0 import from here."""

from ._runtime.config import ConfigError, Source, SourceLimits

__all__ = ["ConfigError", "Source", "SourceLimits"]
