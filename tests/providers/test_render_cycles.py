"""Rendering leaves no reference cycle: a run renders every workflow once, and a rendering that
only the garbage collector can free keeps it, and the workflow it read, alive until the next
collection (and makes each collection longer)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from migrator.errors import TranslationError
from migrator.model import Workflow
from migrator.providers.dataworks.render import render as to_dataworks
from migrator.providers.emr.render import render as to_emr
from migrator.providers.enos.render import render as to_enos
from migrator.sample import generate

RENDERERS: dict[str, Callable[[Workflow], Any]] = {
    "dataworks": lambda wf: to_dataworks(wf, "migrated"),
    "emr": lambda wf: to_emr(wf, project_id="FP-1", region="cn-hangzhou", cluster_id="C-1"),
    "enos": lambda wf: to_enos(wf, folder="migrated", submitter="db_etl"),
}


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize(("target", "source"), [("dataworks", "emr"), ("emr", "dataworks"), ("enos", "emr")])
@pytest.mark.usefixtures("no_collector")
def test_a_rendering_is_freed_as_soon_as_it_is_dropped(target: str, source: str) -> None:
    workflows = list(generate(40, seed=3, system=source))
    warned = 0
    for wf in workflows:
        try:
            rendered = RENDERERS[target](wf)
        except TranslationError:  # an untranslatable sample: what matters is what it left
            continue
        warned += bool(rendered[2] if isinstance(rendered, tuple) else rendered.warnings)
    assert warned, "the sample must exercise the warning callbacks"
    assert gc.collect() == 0
