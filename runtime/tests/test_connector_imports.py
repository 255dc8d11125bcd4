"""The connector kinds' heavy imports (connector_imports.py): once per process, under one lock,
before any connector source reads, so that no source meets a module another thread is still
importing ("partially initialized module 'pandas' has no attribute 'DataFrame'")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import RUNTIME, user_environment
from .test_connectors import TOKEN, api_server, write_config

__all__ = ["api_server"]  # a fixture of test_connectors, used here

# The first run of a workflow in a fresh process, printed as {source id: [ok, records, error]}.
# Only what the runtime had at 0.7.0 (37b4d87), so that the same test shows the race there.
FIRST_RUN = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.test_connectors import by_id, run
results = by_id(run(Path(sys.argv[1]), executor="thread"))
print(json.dumps({key: [r.ok, r.records, r.error] for key, r in results.items()}))
"""

SAMPLE_DATABASE = (
    RUNTIME.parent
    / "template/src/{{ package_name }}/workflows/{{ workflow_module }}/data"
    / "{% yield source from sql_sources %}{{ source.id }}{% endyield %}.sqlite"
)
RUNS = 8  # fresh processes; at 0.7.0 each of them failed (see the CHANGELOG's Fixed line)


def race_workflow(folder: Path, api: str, dataset: str) -> Path:
    """sql (the template's sample SQLite), http (the test API) and file sources (new CSV and
    Parquet files, which import pandas and pyarrow as they are read) side by side."""
    folder.mkdir(parents=True)
    shutil.copyfile(SAMPLE_DATABASE, folder / "orders.sqlite")
    (folder / "csv").mkdir()
    (folder / "parquet").mkdir()
    for number in range(3):
        rows = "".join(f"{number * 100 + n},{n * 1.5}\n" for n in range(50))
        (folder / "csv" / f"{number}.csv").write_text("id,value\n" + rows, encoding="utf-8")
    # The Parquet file is written by a process of its own: pyarrow must not be imported here
    # for nothing (this process does not read), and is not in the runs' processes either.
    parquet = folder / "parquet" / "0.parquet"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pyarrow, pyarrow.parquet as pq;"
            " pq.write_table(pyarrow.table({'id': list(range(40))}), sys.argv[1])",
            str(parquet),
        ],
        check=True,
    )
    return write_config(
        folder,
        {
            "id": "orders",
            "name": "Orders",
            "kind": "sql",
            "sql": {
                "url_env": "ORDERS_URL_NOT_SET",
                "sqlite_file": "orders.sqlite",
                "table": "records",
                "cursor": "updated_at",
            },
        },
        {
            "id": "events",
            "name": "Events",
            "kind": "http",
            "http": {
                "base_url": f"{api}/",
                "path": f"{dataset}/pages",
                "auth": {"type": "bearer", "token_env": "API_TOKEN"},
                "paginator": {"type": "page_number", "base_page": 1, "total_path": "total_pages"},
                "data_selector": "data",
                "incremental": {"cursor_path": "updated_at", "start_param": "since"},
            },
        },
        {
            "id": "exports",
            "name": "Exports",
            "kind": "file",
            "file": {"path": "csv", "glob": "*.csv", "format": "csv"},
        },
        {
            "id": "snapshots",
            "name": "Snapshots",
            "kind": "file",
            "file": {"path": "parquet", "glob": "*.parquet", "format": "parquet"},
        },
        executor="thread",
        timeout_seconds=60,
    )


def first_run(config: Path, history: Path, *paths: Path) -> dict[str, Any]:
    """{source id: [ok, records, error]} of the workflow's first run in a fresh process, with
    `paths` first on its Python path."""
    environment = user_environment(API_TOKEN=TOKEN, EXAMPLE_PROJECT_HISTORY_DB=str(history))
    environment["PYTHONPATH"] = os.pathsep.join([*map(str, paths), environment["PYTHONPATH"]])
    done = subprocess.run(
        [sys.executable, "-c", FIRST_RUN, str(config), str(RUNTIME)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def test_first_runs_of_sql_http_and_file_sources_side_by_side_on_threads_all_succeed(
    tmp_path: Path, api_server: str
) -> None:
    """Each run a fresh process on new files, two at a time. At 0.7.0 the `sql` and `http`
    sources of nearly every one failed on pandas or pyarrow half imported by a `file` source's
    thread (`retries` did not help: the module stayed half made for the whole read)."""
    configs = [race_workflow(tmp_path / f"run{n}", api_server, f"race{n}x") for n in range(RUNS)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(
            pool.map(lambda config: first_run(config, config.parent / "history.sqlite"), configs)
        )

    failures = [
        f"run {n}: {source}: {error}"
        for n, results in enumerate(runs)
        for source, (ok, _, error) in results.items()
        if not ok
    ]
    assert not failures, f"{len(failures)} failed sources:\n" + "\n".join(failures)
    for results in runs:
        assert {key: records for key, (_, records, _) in results.items()} == {
            "orders": 200, "events": 23, "exports": 150, "snapshots": 40,
        }  # fmt: skip


def slow_dlt_plugin(folder: Path, seconds: float) -> Path:
    """An installed package that dlt loads as a plugin (an entry point in group `dlt`) as its
    connectors are imported, and whose import takes `seconds`: a first import of dlt, pandas
    and pyarrow as slow as on a busy machine, every time."""
    folder.mkdir()
    (folder / "slow_dlt_plugin.py").write_text(f"import time\ntime.sleep({seconds})\n")
    metadata = folder / "slow_dlt_plugin-1.0.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: slow-dlt-plugin\nVersion: 1.0\n"
    )
    (metadata / "entry_points.txt").write_text("[dlt]\nslow = slow_dlt_plugin\n")
    return folder


@pytest.mark.integration
def test_a_slow_first_import_of_the_connectors_is_not_counted_against_a_timeout(
    tmp_path: Path,
) -> None:
    """On `thread` and `async` the connectors are imported before a source's attempt starts:
    a first import longer than timeout_seconds (7 s seen on a loaded 2-core machine, where
    a 5-row read then timed out) times out no source. Until runtime 0.9.1 it did."""
    folder = tmp_path / "files"
    (folder / "csv").mkdir(parents=True)
    (folder / "csv" / "a.csv").write_text("id,value\n1,2\n3,4\n", encoding="utf-8")
    config = write_config(
        folder,
        {
            "id": "exports",
            "name": "Exports",
            "kind": "file",
            "file": {"path": "csv", "glob": "*.csv", "format": "csv"},
        },
        executor="thread",
        timeout_seconds=2,
    )
    plugin = slow_dlt_plugin(tmp_path / "plugin", seconds=3)

    results = first_run(config, folder / "history.sqlite", plugin)

    assert results == {"exports": [True, 2, None]}


# What a read of each kind would import if the warm-up had left it out: the heavy families.
FAMILIES = ("dlt", "sqlalchemy", "pandas", "pyarrow", "numpy", "fsspec", "requests", "urllib3")

READ_EACH_KIND = """
import json, sys
from pathlib import Path
from parallel_workflow_runtime._core.config import load_config
from parallel_workflow_runtime._connectors.connector_imports import imported_once
from parallel_workflow_runtime._connectors.connectors import open_rows
from parallel_workflow_runtime._connectors.read_context import Deadline, Secrets, flattened

families = tuple(sys.argv[2].split(","))
config = load_config(Path(sys.argv[1]))
imported_once("sql")
found = {}
for source in config.sources:
    before = set(sys.modules)
    chunks, _ = open_rows(source, None, Secrets(), Deadline(None, None))
    rows = sum(1 for _ in flattened(chunks))
    new = sorted(m for m in set(sys.modules) - before if m.split(".")[0] in families)
    found[source.id] = [rows, new]
print(json.dumps(found))
"""


def test_once_imported_a_read_of_any_kind_imports_nothing_heavy(
    tmp_path: Path, api_server: str
) -> None:
    """What dlt imports lazily in the middle of a read is in connector_imports.HEAVY_MODULES:
    a read of each kind (a table, a query, an API, CSV, Parquet and JSON Lines files) after
    `imported_once` imports no module of dlt, SQLAlchemy, pandas, pyarrow, numpy or fsspec.
    If a dlt release imports something new mid-read, this names it."""
    config = race_workflow(tmp_path / "kinds", api_server, f"kinds{os.getpid()}")
    (tmp_path / "kinds" / "jsonl").mkdir()
    (tmp_path / "kinds" / "jsonl" / "a.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    document["sources"] += [
        {
            "id": "query",
            "name": "Query",
            "kind": "sql",
            "sql": {
                "url_env": "ORDERS_URL_NOT_SET",
                "sqlite_file": "orders.sqlite",
                "query": "SELECT id, updated_at FROM records",
                "cursor": "updated_at",
            },
        },
        {
            "id": "lines",
            "name": "Lines",
            "kind": "file",
            "file": {"path": "jsonl", "glob": "*.jsonl", "format": "jsonl"},
        },
    ]
    config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")

    done = subprocess.run(
        [sys.executable, "-c", READ_EACH_KIND, str(config), ",".join(FAMILIES)],
        capture_output=True,
        text=True,
        env=user_environment(API_TOKEN=TOKEN),
        timeout=240,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert {key: rows for key, (rows, _) in found.items()} == {
        "orders": 200, "events": 23, "exports": 150, "snapshots": 40, "query": 200, "lines": 2,
    }  # fmt: skip
    assert {key: new for key, (_, new) in found.items() if new} == {}


@pytest.mark.integration
def test_a_missing_dlt_is_the_one_line_that_says_what_to_install() -> None:
    """With dlt not importable, the warm-up fails the source with the extra to install, as
    each kind's read did before."""
    program = (
        "import sys; sys.modules['dlt'] = None\n"
        "from parallel_workflow_runtime._connectors.connector_imports import imported_once\n"
        "from parallel_workflow_runtime._core.results import SourceError\n"
        "try:\n    imported_once('http')\n"
        "except SourceError as error:\n    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == (
        "kind http needs the runtime's http extra: keep http in the extras of"
        " parallel-workflow-runtime[...] in the project's pyproject.toml, then pip install -e ."
    ), done.stderr
