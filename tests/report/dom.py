"""Reads the throughput chart back out of a report page (as written, or as a browser dumped it)."""

from __future__ import annotations

from html.parser import HTMLParser


class ChartReader(HTMLParser):
    """Collects every ``<g class="bucket">`` of the chart: its data attributes, its tooltip, and the
    bar segments (``<rect>``) drawn inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[dict[str, str]] = []
        self.buckets: list[dict[str, str]] = []
        self.titles: list[str] = []
        self.rects: list[list[dict[str, str]]] = []
        self._in_bucket = False
        self._in_title = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self.svgs.append(values)
        elif tag == "g" and values.get("class") == "bucket":
            self.buckets.append(values)
            self.titles.append("")
            self.rects.append([])
            self._in_bucket = True
        elif tag == "rect" and self._in_bucket:
            self.rects[-1].append(values)
        elif tag == "title" and self._in_bucket:
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "g":
            self._in_bucket = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles[-1] += data
        else:
            self.text.append(data)


def read_chart(page: str) -> ChartReader:
    reader = ChartReader()
    reader.feed(page)
    reader.close()
    return reader
