"""Deprecated: `parallel_workflow_runtime.check` (runtime 0.10.0 and before) is private since
0.11.0 and goes in 0.12.0. Import its public names from `parallel_workflow_runtime`."""

from parallel_workflow_runtime._deprecated import moved

__getattr__ = moved(__name__, "parallel_workflow_runtime._cli.check_sources")
