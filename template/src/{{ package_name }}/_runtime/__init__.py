"""The template's engine: the command line, config loading, execution limits, results,
report, progress, registry, run history, serving and bench.

Copier renders it from the parallel-workflow template and `copier update` replaces it with
newer versions: you never need to edit it (propose changes upstream instead). Your code lives
in `workflows/`; what it may import is in the package's `__init__.py`.
"""
