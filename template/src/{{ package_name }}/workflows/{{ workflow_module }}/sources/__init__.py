"""One module per source, named after its id in config.yaml, each defining `run`.

`run` holds that source's processing and nothing else: replace its body with your own code.
It receives the source's entry from config.yaml (`source.id`, `source.name`, its own settings
in `source.settings`) and returns `SourceSummary(records=..., details={...})`: how many
records it processed, plus any JSON details worth reporting (at most `max_details_bytes`).
Raise on failure: the workflow records the error as this source's result and the other
sources carry on. Sources run at the same time (at most `max_concurrency` at once), so a source
must not rely on another one having run.

- A python source (no `kind` in config.yaml) defines `run(source)` and reads its data itself
  (a database query, an API call, a file export).
- A connector source (`kind: sql`, `http` or `file`) defines `run(source, rows)`: dlt reads
  the rows its config.yaml block describes (only those new since the last run, when it has a
  cursor): `for row in rows` yields each as a dict, `rows.batches()` the same rows as Arrow
  record batches. Read them all: the cursor moves past the rows read.

Write `def run` for blocking code (it runs in a thread of its own) or `async def run` for
asyncio code (it runs on the workflow's event loop, so it must not call blocking functions).
config.yaml's `timeout_seconds` and `retries` apply to either.
"""
