"""The example-project workflow.

config.yaml lists its sources; workflow.py builds the Agno Workflow from it.
"""
