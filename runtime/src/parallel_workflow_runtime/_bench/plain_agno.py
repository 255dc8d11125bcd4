"""The baseline of `bench --startup`: the workflow as a user writes it with plain Agno, the
seed's own script, without the runtime (no history, no config, no progress, no page).

`bench --startup` runs this file by its path (`python plain_agno.py '<json>'`), so that it
imports Agno and the standard library alone, not this package. The same four steps as the
project's workflow: Preparation, one Step per source inside a Parallel, Aggregation (records,
the sequential time, the time saved) and a deterministic Report. Each source's step waits as
long as that source took in the `run` it is paired with (the JSON argument: the workflow's
name and each source's name and seconds), so that both do the same waiting; the line compares
what each adds around the sources, which holds for sources that wait on I/O (the seed's):
a source that computes would cost the runtime's run CPU that the baseline does not spend.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from agno.workflow import Parallel, Step, StepInput, StepOutput, Workflow


def source_step(name: str, seconds: float) -> Step:
    def wait(step_input: StepInput) -> StepOutput:
        started = time.perf_counter()
        time.sleep(seconds)  # the source's own time in the paired run
        return StepOutput(content={"source": name, "seconds": time.perf_counter() - started})

    return Step(name=name, executor=wait)


def preparation(step_input: StepInput) -> StepOutput:
    return StepOutput(content=f"Preparing the sources for: {step_input.input}")


def aggregation(step_input: StepInput) -> StepOutput:
    parallel = step_input.get_step_output("ParallelProcessing")
    branches = (parallel.steps or []) if parallel is not None else []
    seconds = [step.content["seconds"] for step in branches if isinstance(step.content, dict)]
    sequential = sum(seconds)
    saved = sequential - max(seconds, default=0.0)
    return StepOutput(content={"sources": len(seconds), "sequential": sequential, "saved": saved})


def report(step_input: StepInput) -> StepOutput:
    totals = step_input.previous_step_content or {}
    return StepOutput(
        content=f"# Report\n\n{totals.get('sources')} sources; {totals.get('saved', 0):.2f} s saved"
    )


def main() -> None:
    plan = json.loads(sys.argv[1])
    # Any: Agno annotates Parallel's steps as a union that a list of Steps does not match.
    branches: list[Any] = [source_step(name, seconds) for name, seconds in plan["sources"]]
    workflow = Workflow(
        name=plan["name"],
        steps=[
            Step(name="Preparation", executor=preparation),
            Parallel(*branches, name="ParallelProcessing"),
            Step(name="Aggregation", executor=aggregation),
            Step(name="Report", executor=report),
        ],
        telemetry=False,
    )
    print(workflow.run(input="Process all data sources").content)


if __name__ == "__main__":
    main()
