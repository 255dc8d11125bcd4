"""The Jinja2 templates of the HTML pages (templates/, shipped in the wheel): the run's page,
the bench's page, the timeline's SVG, the trace's tree and `serve`'s API docs.

Every template escapes what it prints: the names, errors, requests and reports in a page are
text that sources and users wrote, and none of it may become markup. The Python side hands a
template a view model of strings and numbers already computed (page_parts.py, trace_view.py);
the one piece of markup it hands over, the report, is HTML that markdown-it-py wrote with raw
HTML turned off (page.report_html).
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

ENVIRONMENT = Environment(
    loader=PackageLoader("parallel_workflow_runtime._observe", "templates"),
    # Every template is HTML or SVG: escaping is on for all of them, whatever they are named.
    autoescape=True,
    # A view model without a name the template prints is a bug, not an empty string.
    undefined=StrictUndefined,
    # A `{% ... %}` line leaves no line of its own: the pages read as the templates are laid out.
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render(template: str, **view: Any) -> str:
    """The template of that name (under templates/) with the view model `view`."""
    return ENVIRONMENT.get_template(template).render(**view)
