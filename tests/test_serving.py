"""The project on its own: a fresh virtual environment holding only the rendered project (its
runtime with the extras its one requirement names, `serve` among them) and pytest runs the
rendered project's tests (the server's among them), without its dev tools. The runtime comes
from the template's repository, the other wheels from .wheelhouse (scripts/wheelhouse fills
it), so the test itself needs no network. And the served API against its own OpenAPI
document, with Schemathesis, on the runtime's example project."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from helpers import RUNTIME, TEMPLATE, copier

WHEELHOUSE = TEMPLATE / ".wheelhouse"


def test_the_project_alone_runs_the_rendered_tests(published: str, tmp_path: Path) -> None:
    assert (WHEELHOUSE / ".stamp").is_file(), "no .wheelhouse: run scripts/bootstrap first"
    project = tmp_path / "project"
    # From the template's URL, as users copy it: the runtime comes from there too.
    rendered = copier("copy", "--defaults", published, str(project))
    assert rendered.returncode == 0, rendered.stderr
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # uv resolves the extras from the same metadata pip reads, in about 1 s of CPU where pip
    # takes 18 s (measured on 2 cores): the suite's time goes to the tests, not the installer.
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            python,
            "--offline",
            "--no-index",
            "--no-cache",
            "--find-links",
            str(WHEELHOUSE),
            "-e",
            ".",
            "pytest",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    environment["AGNO_TELEMETRY"] = "false"

    result = subprocess.run(
        [python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


# Schemathesis's checks of what the server answers: no 5xx, and every status code, content type
# and body as the OpenAPI document says.
CONFORMANCE = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


def test_the_served_api_answers_as_its_openapi_document_says(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = "schemathesis-test-key"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(RUNTIME / "tests" / "project" / "src"), str(RUNTIME)]),
        "AGNO_TELEMETRY": "false",
        "OS_SECURITY_KEY": key,
        "EXAMPLE_PROJECT_HISTORY_DB": str(tmp_path / "history.sqlite"),
    }
    # The runtime tests' program that makes every source of their example project synthetic,
    # then hands over to its command line: `serve`.
    program = "from tests.conftest import SYNTHETIC_PROGRAM; exec(SYNTHETIC_PROGRAM)"
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-c", program, "serve", "--port", str(port)],
            cwd=RUNTIME,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text("utf-8")
            assert time.monotonic() < deadline, log.read_text("utf-8")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                time.sleep(0.2)
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--header",
                f"Authorization: Bearer {key}",
                "--checks",
                CONFORMANCE,
                "--max-examples",
                "15",
                "--seed",
                "18",
                "--request-timeout",
                "30",
                "--no-color",
            ],
            cwd=tmp_path,  # where it writes its .schemathesis folder
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.kill()
        server.wait()
    assert result.returncode == 0, result.stdout[-6000:] + log.read_text("utf-8")[-3000:]
