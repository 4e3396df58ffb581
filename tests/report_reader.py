"""Reading the numbers back out of the evaluation report (tests only)."""

from __future__ import annotations

import json
from html.parser import HTMLParser


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells: list[dict] = []
        self._open: dict | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "td" and "data-path" in attrs:
            self._open = {**attrs, "shown": ""}

    def handle_data(self, data):
        self.text.append(data)
        if self._open is not None:
            self._open["shown"] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._open is not None:
            self.cells.append(self._open)
            self._open = None


def read_report(path) -> tuple[list[dict], str]:
    """The report's number cells ({"data-doc", "path", "data-value"?, "shown"}) and its text."""
    parser = _Cells()
    with open(path, encoding="utf-8") as f:
        parser.feed(f.read())
    for cell in parser.cells:
        cell["path"] = json.loads(cell["data-path"])
    return parser.cells, "".join(parser.text)


def lookup(document, path: list):
    """The value at `path` (keys and list indexes) in a JSON document."""
    for key in path:
        document = document[key]
    return document
