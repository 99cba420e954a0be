"""Progress reports, read from the store only: one dict (``build``), laid out as a terminal table,
JSON, Markdown or a self-contained HTML page; and CSV, one row per item."""

from migrator.report.build import build, chosen_run, to_json
from migrator.report.html import render as to_html
from migrator.report.markdown import render as to_markdown
from migrator.report.sheet import write as write_csv
from migrator.report.table import print_table

__all__ = ["build", "chosen_run", "print_table", "to_html", "to_json", "to_markdown", "write_csv"]
