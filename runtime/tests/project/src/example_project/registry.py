"""Where the parallel-workflow runtime finds this project: its package and its workflows.

Importing the package registers it (its `__init__.py` imports this module). Every folder of
`workflows/` that holds a `config.yaml` is a workflow; adding one needs no change here.
"""

from pathlib import Path

from parallel_workflow_runtime import Project

project = Project.register("example_project", Path(__file__).with_name("workflows"))
