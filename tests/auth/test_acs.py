"""ACS signing against the official test vectors (alibaba-apis.md sections 2.2 and 3.2)."""

from __future__ import annotations

import os

import pytest

from migrator.auth import acs

V1_PARAMS = [
    ("AccessKeyId", "testid"),
    ("Action", "DescribeRegions"),
    ("Format", "XML"),
    ("SignatureMethod", "HMAC-SHA1"),
    ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
    ("SignatureVersion", "1.0"),
    ("Timestamp", "2016-02-23T12:46:24Z"),
    ("Version", "2014-05-26"),
]


def test_v1_official_vector() -> None:
    assert acs.v1_string_to_sign("GET", V1_PARAMS) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1"
        "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
        "%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
    )
    assert acs.v1_signature("testsecret", "GET", V1_PARAMS) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_v1_verify_accepts_and_rejects() -> None:
    sig = acs.v1_signature("testsecret", "POST", [*V1_PARAMS, ("Name", "my job")])
    query = [*V1_PARAMS, ("Signature", sig)]
    form = [("Name", "my job")]
    ok = acs.verify(
        method="POST",
        path="/",
        query=query,
        form=form,
        headers={},
        body=b"",
        secret_for={"testid": "testsecret"},
    )
    assert ok.access_key_id == "testid"
    assert ok.version == "v1"
    with pytest.raises(acs.SignatureError) as err:
        acs.verify(
            method="POST",
            path="/",
            query=query,
            form=[("Name", "other")],
            headers={},
            body=b"",
            secret_for={"testid": "testsecret"},
        )
    assert err.value.code == "SignatureDoesNotMatch"
    with pytest.raises(acs.SignatureError) as err:
        acs.verify(
            method="POST", path="/", query=query, form=form, headers={}, body=b"", secret_for={"other": "x"}
        )
    assert err.value.code == "InvalidAccessKeyId.NotFound"


V3_HEADERS = {
    "host": "ecs.cn-shanghai.aliyuncs.com",
    "x-acs-action": "RunInstances",
    "x-acs-version": "2014-05-26",
    "x-acs-date": "2023-10-26T10:22:32Z",
    "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
    "x-acs-content-sha256": acs.EMPTY_SHA256,
}
V3_QUERY = (("ImageId", "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd"), ("RegionId", "cn-shanghai"))


def test_v3_official_vector() -> None:
    req = acs.V3Request("POST", "/", V3_QUERY, V3_HEADERS, b"")
    signed = sorted(V3_HEADERS)
    canonical = acs.v3_canonical_request(req, signed)
    assert (
        acs.sha256_hex(canonical.encode())
        == "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    assert acs.v3_signature("YourAccessKeySecret", req, signed) == (
        "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )


def test_v3_sign_then_verify_round_trip_and_tamper() -> None:
    body = b"ProjectId=1&Spec=%7B%7D"
    headers = acs.v3_sign(
        "ak",
        "sk",
        method="POST",
        host="127.0.0.1:1",
        action="ImportWorkflowDefinition",
        version="2024-05-18",
        body=body,
        content_type="application/x-www-form-urlencoded",
    )
    ok = acs.verify(
        method="POST", path="/", query=[], form=[], headers=headers, body=body, secret_for={"ak": "sk"}
    )
    assert (ok.access_key_id, ok.version) == ("ak", "v3")
    with pytest.raises(acs.SignatureError) as err:
        acs.verify(
            method="POST", path="/", query=[], form=[], headers=headers, body=body, secret_for={"ak": "wrong"}
        )
    assert err.value.code == "SignatureDoesNotMatch"
    with pytest.raises(acs.SignatureError) as err:
        acs.verify(
            method="POST",
            path="/",
            query=[],
            form=[],
            headers=headers,
            body=body + b"x",
            secret_for={"ak": "sk"},
        )
    assert err.value.code == "SignatureDoesNotMatch"


def test_percent_encode_rules() -> None:
    assert acs.percent_encode("a b*c~d/é") == "a%20b%2Ac~d%2F%C3%A9"


def test_nonces_never_repeat_in_a_process_or_across_a_fork() -> None:
    made = {acs.new_nonce() for _ in range(10_000)}
    assert len(made) == 10_000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next nonce, then gone without running the parent's cleanup
        os.write(write, acs.new_nonce().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child not in made | {acs.new_nonce()}
    assert child[:16] != acs.new_nonce()[:16]  # a fresh prefix, not the parent's counter
