"""The history's database: Agno's own SQLite and PostgreSQL adapters, which here write each
fact of a run once.

Agno writes a run as it holds it in memory, where one fact has several copies: a source's
error of 1 MB took 6 MB. It was in the source's step, in the Parallel block's content (its
branches' contents joined into one text), in the aggregation, in the report, in the run's
content (Agno's copy of its last step's) and in the session state's aggregation. Written
here, each is stored once:

- a source's result: in the aggregation, the Aggregation step's content. The source's own step
  keeps its name, status and timings; its content is left out when the aggregation holds it.
- the Parallel block's content: left out, it is its branches' contents joined.
- the report (the last step's content): as the run's content, which Agno's routes answer, and
  not again as that step's (history.py reads it back from there).
- the session state: without the aggregation, which is its last run's Aggregation step's
  content. A session read back has it again, taken from there: Agno's session route answers
  the same session state as before.

The PostgreSQL adapter is in history_postgres.py: importing Agno's takes a third of a second,
which a run on the SQLite history does not pay.

Only what is written changes: the run and the session state in memory, which `run`, `serve`
and a caller of `workflow.arun` read, keep every copy.

Every way Agno writes or reads a session here goes through these: one at a time
(`upsert_session`, `get_session`) and in bulk (`upsert_sessions`, which Agno's own bulk writes
use and which goes straight to SQL, not through `upsert_session`; `get_sessions`). Agno's async
paths (`await db.upsert_session(...)`) are for its async adapters only: `arun` on these sync
ones calls the methods below.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from agno.db.base import BaseDb
from agno.db.sqlite import SqliteDb
from agno.run.workflow import WorkflowRunOutput
from agno.session.workflow import WorkflowSession

from parallel_workflow_runtime._core.config import AGGREGATION_STEP, PARALLEL_STEP
from parallel_workflow_runtime._store.database import reason

# Where the Aggregation step leaves the aggregation in the session state (steps.py).
AGGREGATION_KEY = "aggregation"


class StoresEachFactOnce(BaseDb):
    """What the history's adapters write of a run and of its session (see the module)."""

    def upsert_run(
        self,
        run: Any,
        session_id: str,
        user_id: str | None = None,
        run_index: int | None = None,
    ) -> None:
        if isinstance(run, WorkflowRunOutput):
            run = compacted_run(run.to_dict())
        super().upsert_run(run, session_id, user_id=user_id, run_index=run_index)

    # safe-super: BaseDb declares these abstract; the adapter this class is mixed into before
    # (SqliteDb, PostgresDb) implements them.
    def upsert_session(self, session: Any, deserialize: bool | None = True) -> Any:
        stored = without_aggregation(session)
        session_id = str(getattr(session, "session_id", ""))
        try:
            upserted = super().upsert_session(stored, deserialize=deserialize)  # type: ignore[safe-super]
        except Exception as error:
            # Agno's workflow logs a failed save and carries on: the run's outcome says why.
            self.failed_writes()[session_id] = reason(error)
            raise
        # A later write that went through: nothing to say any more (and nothing kept, in a
        # `serve` that lives for months).
        self.failed_writes().pop(session_id, None)
        return upserted

    def failed_writes(self) -> dict[str, str]:
        """Why the last write of a session failed, by session id (the caller pops it)."""
        return self.__dict__.setdefault("_failed_writes", {})

    def get_session(self, *args: Any, **kwargs: Any) -> Any:
        return with_aggregation(super().get_session(*args, **kwargs))  # type: ignore[safe-super]

    def upsert_sessions(
        self,
        sessions: list[Any],
        deserialize: bool | None = True,
        preserve_updated_at: bool = False,
    ) -> list[Any]:
        stored = [without_aggregation(session) for session in sessions]
        return super().upsert_sessions(  # type: ignore[safe-super]
            stored, deserialize=deserialize, preserve_updated_at=preserve_updated_at
        )

    def get_sessions(self, *args: Any, **kwargs: Any) -> Any:
        found = super().get_sessions(*args, **kwargs)  # type: ignore[safe-super]
        if isinstance(found, tuple):  # deserialize=False: the sessions as dicts, and a count
            sessions, count = found
            return [with_aggregation(session) for session in sessions], count
        return [with_aggregation(session) for session in found]


class SqliteHistory(StoresEachFactOnce, SqliteDb):
    """The history in an SQLite file."""


def compacted_run(run: dict[str, Any]) -> dict[str, Any]:
    """A workflow run as Agno serializes it, without the copies (see the module)."""
    # Agno serializes every step as a dict (a Steps block's flattened): anything else is kept.
    steps: list[Any] = run.get("step_results") or []
    if not steps or not all(isinstance(step, dict) for step in steps):
        return run
    aggregated = any(
        step.get("step_name") == AGGREGATION_STEP
        and step.get("success", True)
        and isinstance(step.get("content"), str)
        for step in steps
    )
    compacted = [compacted_step(step, aggregated) for step in steps]
    last = compacted[-1]
    if last.get("content") is not None and last.get("content") == run.get("content"):
        compacted[-1] = {**last, "content": None}
    return {**run, "step_results": compacted}


def compacted_step(step: dict[str, Any], aggregated: bool) -> dict[str, Any]:
    branches = step.get("steps")
    if step.get("step_type") != "Parallel" or not isinstance(branches, list):
        return step
    if step.get("step_name") == PARALLEL_STEP and aggregated:
        branches = [{**branch, "content": None} for branch in branches]
    return {**step, "content": None, "steps": branches}


def without_aggregation(session: Any) -> Any:
    """A shallow copy of a workflow's session whose session state has no aggregation."""
    if not isinstance(session, WorkflowSession) or not session.session_data:
        return session
    state = session.session_data.get("session_state")
    if not isinstance(state, dict) or AGGREGATION_KEY not in state:
        return session
    stored = copy.copy(session)
    stored.session_data = {
        **session.session_data,
        "session_state": {key: value for key, value in state.items() if key != AGGREGATION_KEY},
    }
    return stored


def with_aggregation(session: Any) -> Any:
    """A session as it was read (Agno's object, or a dict), with the aggregation of its last
    aggregated run back in its session state."""
    if isinstance(session, WorkflowSession):
        runs, data = session.runs or [], session.session_data
    elif isinstance(session, dict) and session.get("session_type") == "workflow":
        runs, data = session.get("runs") or [], session.get("session_data")
    else:
        return session
    state = data.get("session_state") if isinstance(data, dict) else None
    if not isinstance(state, dict) or AGGREGATION_KEY in state:
        return session  # no state to complete, or one written before this version
    aggregation = last_aggregation(runs)
    if aggregation is not None:
        state[AGGREGATION_KEY] = aggregation
    return session


def last_aggregation(runs: list[Any]) -> dict[str, Any] | None:
    """The Aggregation step's content of the last of `runs` that has one (Agno's run objects,
    or dicts), as JSON."""
    for run in reversed(runs):
        steps = run.get("step_results") if isinstance(run, dict) else run.step_results
        for step in steps or []:
            name, content = (
                (step.get("step_name"), step.get("content"))
                if isinstance(step, dict)
                else (getattr(step, "step_name", None), getattr(step, "content", None))
            )
            if name == AGGREGATION_STEP and isinstance(content, str):
                with contextlib.suppress(ValueError):
                    aggregation: dict[str, Any] = json.loads(content)
                    return aggregation
    return None
