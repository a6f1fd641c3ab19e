"""requests' request preparation for an engine call, without its per-call overhead.

`requests.PreparedRequest.prepare` costs about 0.27 M instructions per start:
the URL parsed, IDNA-checked and requoted every time, a cookie jar for no
cookies, every header checked by regular expression, a JSON encoder built
per body. `prepare_json` makes the same request for what an engine sends on
the direct path (a JSON body or none; forms go through requests): the URL
from requests' own preparation, remembered per URL and parameters; the same
header checks (remembered per header), the same header order, the same body
bytes, then the credentials, as requests applies them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, cast

import requests
from requests.exceptions import InvalidJSONError
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity

_ENCODER = json.JSONEncoder(allow_nan=False)
"""What ``json.dumps(body, allow_nan=False)`` (requests' call) builds on every call."""


class DirectRequest(requests.PreparedRequest):
    """A request `prepare_json` made; ``adapter``: the one it was prepared for."""

    adapter: Any = None


def plain_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """``headers`` as a dict, names as given: what urllib3 and ``{**...}`` go through fastest.

    requests' `CaseInsensitiveDict` keeps ``(name, value)`` under the lowercased
    name in ``_store``; its mapping interface costs a generator and a lookup per
    header (about 3k instructions each), and urllib3 iterates headers twice.
    """
    store = getattr(headers, "_store", None)
    if store is None:  # another mapping (or requests changed): the slow, public way
        return dict(headers.items())
    return dict(store.values())


@functools.lru_cache(maxsize=512)
def prepared_url(url: str, params: tuple[tuple[str, str], ...] = ()) -> str:
    """requests' URL preparation (`PreparedRequest.prepare_url`): a pure function."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, dict(params) if params else None)
    return prepared.url or ""


@functools.lru_cache(maxsize=512)
def _checked(name: str, value: str) -> None:
    """requests' header check (`check_header_validity`), once per header."""
    check_header_validity((name, value))


def prepare_json(
    method: str,
    url: str,
    headers: Mapping[str, str | bytes],
    params: Mapping[str, str],
    body: Any,
    auth: Callable[[requests.PreparedRequest], requests.PreparedRequest] | None,
) -> DirectRequest:
    """What ``PreparedRequest.prepare(method, url, headers, params=params, json=body,
    auth=auth)`` makes (``params`` empty: None), its cookie jar aside (none is sent)."""
    prepared = DirectRequest()
    prepared.method = method.upper()
    prepared.url = prepared_url(url, tuple(params.items()))
    for name, value in headers.items():
        if isinstance(value, str):
            _checked(name, value)
        else:
            check_header_validity((name, cast(Any, value)))
    fields: CaseInsensitiveDict[Any] = CaseInsensitiveDict(headers)
    prepared.headers = fields
    if body is not None:
        try:
            data = _ENCODER.encode(body).encode("utf-8")
        except ValueError as exc:
            raise InvalidJSONError(exc, request=prepared) from exc
        prepared.body = data
        fields["Content-Length"] = str(len(data))
        if "content-type" not in fields:
            fields["Content-Type"] = "application/json"
    elif prepared.method not in ("GET", "HEAD") and fields.get("Content-Length") is None:
        fields["Content-Length"] = "0"
    if auth:
        prepared.__dict__.update(auth(prepared).__dict__)
        prepared.prepare_content_length(prepared.body)
    return prepared
