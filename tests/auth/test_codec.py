"""The POP wire codec agrees with urllib's reference functions on any text.

``percent_encode`` and ``form_decode`` take C fast paths (``str.translate``, ``binascii.a2b_qp``)
with guarded fall-backs to ``quote``/``unquote``; these properties prove the guards complete.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote

from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.auth import acs

#: Pieces that meet every guard of the fast decoder: escapes good and bad, ``=``, ``+``, blanks,
#: control characters, non-ASCII text and separators.
_PIECES = [
    *["%", "%2", "%41", "%e4%b8%ad", "%ZZ", "%%", "%C3", "%FF", "%2B", "%3D", "%26", "%2A"],
    *["%0A", "%0D%0A", "=", "&", "+", "a", "~", "*", "é", "中", " ", "\n", "\t", "\x0b"],
]
_WIRE = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join)


@settings(max_examples=3000)
@given(st.text())
def test_percent_encode_is_quote_with_only_unreserved_characters_kept(text: str) -> None:
    assert acs.percent_encode(text) == quote(text, safe="~")


@settings(max_examples=3000)
@given(st.one_of(_WIRE, st.text()))
def test_form_decode_reads_what_parse_qsl_reads(text: str) -> None:
    assert acs.form_decode(text) == parse_qsl(text, keep_blank_values=True)


@given(st.lists(st.tuples(st.text(), st.text()), max_size=5))
def test_a_query_string_by_the_client_decodes_to_its_pairs(pairs: list[tuple[str, str]]) -> None:
    decoded = acs.form_decode(acs.query_string(pairs))
    assert decoded == pairs


@settings(max_examples=2000)
@given(st.lists(st.tuples(st.one_of(_WIRE, st.text()), st.one_of(_WIRE, st.text())), max_size=5))
def test_a_form_body_decodes_to_its_pairs_by_the_sandbox_and_by_parse_qsl(
    pairs: list[tuple[str, str]],
) -> None:
    body = acs.form_body(pairs).decode()
    assert acs.form_decode(body) == pairs
    assert parse_qsl(body, keep_blank_values=True) == pairs


def test_a_form_body_escapes_separators_and_blanks_and_keeps_json_punctuation() -> None:
    spec = '{"name":"a b","sql":"x=1&y+2 #3 50%;","n":[1]}\n'
    assert acs.form_body([("Spec", spec)]) == (
        b'Spec={"name":"a%20b","sql":"x%3D1%26y%2B2%20%233%2050%25%3B","n":[1]}%0A'
    )
    assert acs.form_body([("é", "\x01")]) == b"%C3%A9=%01"
    assert acs.form_body([("Name", "数据 工厂\x7f")]) == b"Name=%E6%95%B0%E6%8D%AE%20%E5%B7%A5%E5%8E%82%7F"
