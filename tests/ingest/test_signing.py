"""OKX signatures against the reference vectors (okx-v5-reference §3, §5.1)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from services.ingest.signing import Credentials, iso_timestamp, login_request, rest_headers

DOC_SECRET = "22582BD0CFF14C41EDBF1AB98506286D"
CREDS = Credentials(SecretStr("key"), SecretStr(DOC_SECRET), SecretStr("pass"))
AT = datetime(2020, 12, 8, 9, 8, 57, 715000, tzinfo=UTC)


@pytest.mark.parametrize(("method", "path", "body", "sign"), [
    pytest.param("GET", "/api/v5/account/balance?ccy=BTC", b"",
                 "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY=", id="get-with-query"),
    pytest.param("POST", "/api/v5/account/set-leverage",
                 b'{"instId":"BTC-USDT","lever":"5","mgnMode":"isolated"}',
                 "eCnnCgWLjlQ9XnpUkrcny3qNq3WW/81KNrDr/XR6Xv8=", id="post-body"),
])
def test_rest_signature(method: str, path: str, body: bytes, sign: str) -> None:
    headers = rest_headers(CREDS, method, path, body, AT)
    assert headers["OK-ACCESS-SIGN"] == sign
    assert headers["OK-ACCESS-TIMESTAMP"] == "2020-12-08T09:08:57.715Z" == iso_timestamp(AT)


def test_login_signature_uses_unix_seconds() -> None:
    request = login_request(CREDS, datetime.fromtimestamp(1538054050, UTC))
    (arg,) = request["args"]
    assert arg["timestamp"] == "1538054050"
    assert arg["sign"] == "+LdIr8lkkvhr5hoA3g9TMC0+uQJ849ftAcocA/ouu4M="


def test_credentials_never_print_their_values() -> None:
    assert DOC_SECRET not in repr(CREDS) and DOC_SECRET not in str(CREDS)
