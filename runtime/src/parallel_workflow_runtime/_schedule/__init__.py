"""Runs started by a clock: `scheduler` decides each tick of each schedule once, in the history,
across replicas; `scheduled` runs them inside `serve`.
"""
