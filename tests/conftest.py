"""Shared test set-up."""

from __future__ import annotations

from typing import Any

import aiohttp
import aioresponses.core
from aiohttp.client_reqrep import ClientResponse


class _WriterlessResponse(ClientResponse):
    """aiohttp 3.14 made ``stream_writer`` a required argument, which aioresponses <= 0.7.9 does not
    pass (pnuckowski/aioresponses#289, open). aiohttp 3.14 is a security release, so rather than
    pinning aiohttp down, mocked responses get a stand-in writer that reports nothing uploaded."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        class _Done:
            output_size = 0

        kwargs.setdefault("stream_writer", _Done())
        super().__init__(method, url, **kwargs)


if "stream_writer" in ClientResponse.__init__.__code__.co_varnames:
    _build = aioresponses.core.RequestMatch._build_response

    def _build_response(
        self: Any, *args: Any, response_class: type[ClientResponse] | None = None, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        return _build(self, *args, response_class=response_class or _WriterlessResponse, **kwargs)

    aioresponses.core.RequestMatch._build_response = _build_response  # type: ignore[method-assign]
