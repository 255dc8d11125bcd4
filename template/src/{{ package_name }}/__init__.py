"""Agno workflows that process named data sources in parallel: see workflows/ and README.md."""
