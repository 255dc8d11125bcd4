"""What every layer shares, and which imports nothing of the runtime above it (decision 0018).

- `project`: the project the runtime serves (its package, its `workflows/` folder);
- `config`, `connector_config`, `schedules`: a workflow's config.yaml, checked;
- `settings`: the project's settings.yaml and the variables that override it;
- `registry`: the project's workflows, found in its `workflows/` folder;
- `results`: what a source returns and how a run's results add up;
- `usage`: the command line's option values and one-line errors (imports nothing).
"""
