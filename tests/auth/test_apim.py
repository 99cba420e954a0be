"""EnOS APIM signing against the official vector and the reference's computed ones (enos-api.md 5.1)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from migrator.auth import apim

OFFICIAL_BODY = '{\n  "count": 20,\n  "page": 1,\n  "desc": "描述"\n}'.encode()


def test_official_vector() -> None:
    query = parse_qsl("k3=v3&k1=v1&k2=v2")
    assert apim.signature("xxxxaaaxxxx", query, OFFICIAL_BODY, "1572574909697", "xxxappSecretxxx") == (
        "59828328f6c1f9771015dc74e4929ae30f518a35a3d2353972c2ea46556fc981"
    )


def test_token_encryption_and_get_and_post_vectors() -> None:
    assert apim.encryption("test-appkey-0001", "1572574909697", "test-secret-0001") == (
        "00044ed995f95b36f10c12b95d0ef9cd532088586cf624475540a655ab64e4f0"
    )
    query = parse_qsl("action=export&flowId=2924&orgId=o123&userId=u456")
    assert apim.params_data(query, b"") == "actionexportflowId2924orgIdo123userIdu456"
    assert apim.signature("TOKEN123", query, b"", "1572574909697", "test-secret-0001") == (
        "2d72571c7f0f3adc45ad662290fe6230f05d25c841d13746d102119c952bf2d9"
    )
    post = parse_qsl("action=enable&orgId=o123&userId=u456")
    assert apim.signature("TOKEN123", post, b'{"flowId":3377}', "1572574909697", "test-secret-0001") == (
        "c9e6bf8ad55638914149c808d08f60629bf0c3c4af4f6b88479598ee4077ceba"
    )


def test_verify_rejects_any_change() -> None:
    query = [("action", "save"), ("userId", "u1")]
    headers = apim.sign("T", query, b'{"a":1}', "100", "S")
    given = headers[apim.SIGNATURE_HEADER]
    assert apim.verify("T", query, b'{"a":1}', "100", "S", given)
    assert not apim.verify("T", query, b'{"a": 1}', "100", "S", given)
    assert not apim.verify("T", query, b'{"a":1}', "101", "S", given)
    assert not apim.verify("T", query, b'{"a":1}', "100", "wrong", given)
