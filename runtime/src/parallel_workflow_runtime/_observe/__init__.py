"""What a run leaves to look at: its traces, its timeline, its HTML page and its report.

- `tracing`: each source attempt an OpenTelemetry span, exported where the settings say;
- `trace_view`: a run's trace as the history keeps it;
- `timeline`: a run on a time axis (what ran at once, what waited);
- `page`, `page_parts`, `page_templates`, `templates/`: a run as one HTML page (Jinja2);
- `report`: the Report step's Markdown, deterministic offline or an Agno Agent's.
"""
