"""migrator.jsontext reads and writes as the standard library does, only faster."""

from __future__ import annotations

import json

import pytest

from migrator import jsontext


@pytest.mark.parametrize(
    "text", ['{"a": [1, 2.5, "é中"]}', "NaN", "[Infinity, -Infinity]", '"\\ud800"', "18446744073709551615"]
)
def test_load_reads_what_json_loads_reads(text: str) -> None:
    assert repr(jsontext.load(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["{bad", "[1,]", "", "1 2"])
def test_load_refuses_as_json_loads_does_in_its_words(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as ours:
        jsontext.load(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


def test_text_is_compact_keeps_non_ascii_and_takes_what_orjson_refuses() -> None:
    value = {"b": [1, 2.5, None, True], "a": 'é中 \n"q"'}
    assert jsontext.text(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert jsontext.text({"n": 2**70}) == '{"n":1180591620717411303424}'
    assert jsontext.data({1: "x"}) == b'{"1":"x"}'  # a non-string key: the standard library's way
