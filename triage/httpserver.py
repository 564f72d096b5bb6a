"""uvicorn options that bound what a client may send before the app sees a request (issue 13).

uvicorn's h11 parser stops a request head at ``h11_max_incomplete_event_size`` bytes, but its
faster httptools parser has no such limit: a 10 MB header was read whole. ``LimitedHttpTools`` is
the httptools protocol with the same limit: once a request's head (request line and headers)
passes it before the headers are complete, the client gets 431 and the connection is closed, so
no more of it is read or held. ``serve.py`` passes ``http_options(settings)`` to ``uvicorn.run``.
"""

from __future__ import annotations

from typing import Any

from triage.config import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # uvicorn without httptools: h11 and its own limit
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

DEFAULT_HEAD_LIMIT = 16_384

if HttpToolsProtocol is not None:

    class LimitedHttpTools(HttpToolsProtocol):
        """httptools with a limit on the request head; the limit is uvicorn's h11 setting, so both parsers agree."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.head_limit = self.config.h11_max_incomplete_event_size or DEFAULT_HEAD_LIMIT
            self.head_bytes = 0
            self.in_head = True

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.in_head, self.head_bytes = True, 0

        def on_headers_complete(self) -> None:
            self.in_head = False
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.in_head and not self.transport.is_closing():
                self.head_bytes += len(data)
                if self.head_bytes > self.head_limit:
                    self.logger.warning("request head from %s over %d bytes: refused (431)",
                                        self.client[0] if self.client else "unknown", self.head_limit)
                    msg = f"request line and headers are over {self.head_limit} bytes\n".encode()
                    self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                         b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                                         b"content-length: " + str(len(msg)).encode() + b"\r\n\r\n" + msg)
                    self.transport.close()


def http_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.run`` options limiting the request head to ``settings.max_header_bytes``."""
    options: dict[str, Any] = {"h11_max_incomplete_event_size": settings.max_header_bytes}
    options["http"] = LimitedHttpTools if HttpToolsProtocol is not None else "h11"
    return options
