"""One module per source, named after its id in config.yaml, each defining `run(source)`.

`run(source)` holds that source's processing and nothing else: replace its body with your own
code (a database query, an API call, a file export). It receives the source's entry from
config.yaml (`source.id`, `source.name` and its own settings in `source.settings`) and returns
`SourceSummary(records=..., details={...})`: how many records it processed, plus any JSON
details worth reporting (at most `max_details_bytes`). Raise on failure: the workflow records
the error as this source's result and the other sources carry on. Sources run at the same time
(at most `max_concurrency` at once), so a source must not rely on another one having run.

Write `def run` for blocking code (it runs in a thread of its own) or `async def run` for
asyncio code (it runs on the workflow's event loop, so it must not call blocking functions).
config.yaml's `timeout_seconds` and `retries` apply to either.
"""
