"""A node's endpoints and secret, and JSON-RPC over HTTP that keeps each response's exact bytes.

Node providers put the API key in the URL (Infura ``/v3/<key>``, Alchemy
``/v2/<key>``, QuickNode ``/<token>/``), for HTTP and websocket alike.  The
key is kept out of ``config.ini`` and the command line: it comes from
``<PREFIX>_SECRET`` (``keys/.env``) and is put where the URL says
``{secret}``, or else appended as the last path segment.  Everything this
package logs or raises goes through :meth:`NodeEndpoints.redact`, and
:func:`redacted_logs` scrubs it from every other log record too (the shared
websocket code logs the URL it connects to).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import orjson

from l3_atom.errors import ServiceUnavailable, UserError

SECRET_PLACEHOLDER = "{secret}"
REDACTED = "***"
RPC_TIMEOUT_S = 30.0
# Characters of a failed response's body quoted in an error.
ERROR_BODY_CHARS = 200
JSON_CONTENT = {"Content-Type": "application/json"}

Redact = Callable[[str], str]


class NodeError(ConnectionError):
    """The node could not answer (transport, HTTP status or JSON-RPC error); the text is already redacted."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class NodeUnavailable(ServiceUnavailable):
    """The node cannot be reached at start-up: a one-line error for the user, secret redacted."""


def with_secret(url: str, secret: str | None) -> str:
    """``url`` with the secret in place of ``{secret}``, or appended as the last path segment."""
    if SECRET_PLACEHOLDER in url:
        if not secret:
            raise UserError(f"the node URL {url} has a {SECRET_PLACEHOLDER} placeholder but no secret is set")
        return url.replace(SECRET_PLACEHOLDER, quote(secret, safe=""))
    if not secret:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{quote(secret, safe='')}"))


@dataclass(frozen=True, repr=False)
class NodeEndpoints:
    """Where a chain's node answers; the secret never appears in ``repr`` or in :meth:`redact`'s output."""

    http_url: str
    ws_url: str
    secret: str | None = None

    @classmethod
    def from_env(
        cls, prefix: str, source: str, http_url: str | None = None, ws_url: str | None = None
    ) -> NodeEndpoints:
        """URLs from the arguments (``--rest-url``/``--ws-url``, ``config.ini``) or ``<PREFIX>_HTTP_URL``/``_WS_URL``."""
        http = http_url or os.environ.get(f"{prefix}_HTTP_URL", "").strip()
        ws = ws_url or os.environ.get(f"{prefix}_WS_URL", "").strip()
        if not http or not ws:
            raise UserError(
                f"{source} needs a node: set {prefix}_HTTP_URL and {prefix}_WS_URL in keys/.env "
                f"(documented in keys/.env.example) or pass --rest-url and --ws-url"
            )
        secret = os.environ.get(f"{prefix}_SECRET", "").strip() or None
        return cls(with_secret(http, secret), with_secret(ws, secret), secret)

    def __repr__(self) -> str:
        return f"NodeEndpoints(http_url={self.redact(self.http_url)!r}, ws_url={self.redact(self.ws_url)!r})"

    def redact(self, text: str) -> str:
        """``text`` with the secret (plain or URL-quoted) replaced by ``***``."""
        if not self.secret:
            return text
        return text.replace(self.secret, REDACTED).replace(quote(self.secret, safe=""), REDACTED)


class _RedactingFilter(logging.Filter):
    """Rewrites a record's message and traceback text without the secret, before any handler formats it."""

    def __init__(self, redact: Redact):
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


@contextmanager
def redacted_logs(redact: Redact) -> Iterator[None]:
    """While inside, every handler of the root logger drops the secret from what it writes."""
    handlers = list(logging.getLogger().handlers)
    scrub = _RedactingFilter(redact)
    for handler in handlers:
        handler.addFilter(scrub)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(scrub)


@dataclass(frozen=True)
class Reply:
    """One JSON-RPC answer: the exact body bytes and the decoded ``result``."""

    body: bytes
    result: Any


class JsonRpc:
    """JSON-RPC 2.0 over HTTP POST; every failure becomes a redacted ``NodeError``."""

    def __init__(self, url: str, redact: Redact):
        self.url = url
        self.redact = redact
        self._ids = count(1)
        self._session: aiohttp.ClientSession | None = None

    def _request(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}

    async def _post(self, payload: object, what: str) -> tuple[bytes, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=RPC_TIMEOUT_S), headers=JSON_CONTENT
            )
        try:
            async with self._session.post(self.url, data=orjson.dumps(payload)) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NodeError(self.redact(f"{what}: {type(exc).__name__}: {exc}")) from None
        if status != 200:
            excerpt = body[:ERROR_BODY_CHARS].decode(errors="replace")
            raise NodeError(self.redact(f"{what}: HTTP {status}: {excerpt}"), status)
        try:
            return body, orjson.loads(body)
        except orjson.JSONDecodeError:
            raise NodeError(self.redact(f"{what}: the node answered with malformed JSON")) from None

    def _result(self, answer: Any, what: str) -> Any:
        if not isinstance(answer, dict):
            raise NodeError(self.redact(f"{what}: unexpected answer {str(answer)[:ERROR_BODY_CHARS]}"))
        error = answer.get("error")
        if error is not None:
            message = error.get("message", error) if isinstance(error, dict) else error
            code = error.get("code") if isinstance(error, dict) else None
            raise NodeError(self.redact(f"{what}: {message}"), code)
        return answer.get("result")

    async def call(self, method: str, *params: Any) -> Reply:
        """One request; a JSON-RPC error raises."""
        body, answer = await self._post(self._request(method, params), method)
        return Reply(body, self._result(answer, method))

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> tuple[bytes, list[Any]]:
        """Several requests in one POST: the body and, in request order, each result or its ``NodeError``."""
        requests = [self._request(method, params) for method, params in calls]
        what = f"batch of {len(requests)} {calls[0][0] if calls else ''}".rstrip()
        body, answers = await self._post(requests, what)
        if not isinstance(answers, list):
            raise NodeError(self.redact(f"{what}: {self._result(answers, what)!r} is not a batch answer"))
        by_id = {answer.get("id"): answer for answer in answers if isinstance(answer, dict)}
        outcomes: list[Any] = []
        for request in requests:
            answer = by_id.get(request["id"])
            if answer is None:
                raise NodeError(self.redact(f"{what}: no answer to request {request['id']}"))
            try:
                outcomes.append(self._result(answer, request["method"]))
            except NodeError as exc:
                outcomes.append(exc)
        return body, outcomes

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
