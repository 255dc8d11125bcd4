"""The Report step: an Agno Agent when a model is configured, one-line errors when it cannot run."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from example_project import Aggregation

from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._observe.timeline import mermaid_gantt

from .conftest import REPORT_MODEL_ENV, RecordingModel


def test_the_agent_receives_the_aggregation_and_writes_the_report(
    entry: WorkflowEntry, recording_model: RecordingModel
) -> None:
    session_state: dict[str, Any] = {}
    workflow = entry.factory(report_model=recording_model)
    output = asyncio.run(workflow.arun(input="Weekly report", session_state=session_state))

    assert output.content == recording_model.reply
    # The agent was sent the aggregation itself, as JSON text, then the timeline to keep.
    message = next(m for m in recording_model.received if m.lstrip().startswith("{"))
    document, timeline = message.split("\n\n```mermaid\n")
    sent = json.loads(document)
    assert sent == json.loads(json.dumps(session_state["aggregation"]))
    assert [s["name"] for s in sent["sources"]] == [s.name for s in entry.config.sources]
    aggregation = Aggregation.model_validate(session_state["aggregation"])
    assert f"```mermaid\n{timeline}" == mermaid_gantt(aggregation) + "\n"


def test_a_provider_without_its_sdk_is_a_one_line_usage_error(
    entry: WorkflowEntry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Make `import anthropic` fail as it does where the SDK is not installed.
    monkeypatch.setitem(sys.modules, "anthropic", None)
    monkeypatch.delitem(sys.modules, "agno.models.anthropic", raising=False)
    monkeypatch.setenv(REPORT_MODEL_ENV, "anthropic:claude-sonnet-4-5")

    assert main(["run", "--workflow", entry.config.workflow_id]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "report model 'anthropic:claude-sonnet-4-5' needs its provider's SDK" in error


@pytest.mark.usefixtures("synthetic_sources")
def test_a_missing_api_key_is_a_one_line_error_and_the_sources_still_run(
    entry: WorkflowEntry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("openai", reason="the dev extra installs the OpenAI SDK")
    monkeypatch.setenv(REPORT_MODEL_ENV, "openai:gpt-4o-mini")

    assert main(["run", "--json", "--workflow", entry.config.workflow_id]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert "Report failed: " in captured.err and "OPENAI_API_KEY" in captured.err
    document = json.loads(captured.out)
    assert document["report"] is None
    assert document["failed"] == []
