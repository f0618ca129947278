"""Serving a registered student over HTTP: MLflow's scoring app behind the limits it lacks.

MLflow's scoring server reads any body whole, parses JSON recursively (100,000 nested lists end in a
500), echoes unparsable bodies back and drops fields its signature does not know. `RequestGuard`
sits in front of it and answers those requests itself: 413 above `max_body_bytes`, 400 for a body
nested deeper than `max_depth`, one that is not JSON, or a field the request contract does not
name. The server runs in this process (uvicorn), so SIGTERM or SIGINT stops it with nothing left behind.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from pipeline.registry.request import RequestContract

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# MLflow's request wrappers; each holds the rows (records or split columns) or, for `params`, none.
_ROW_KEYS = {"dataframe_records", "dataframe_split", "instances", "inputs"}


@dataclass(frozen=True)
class Limits:
    """How large and how deeply nested one request body may be."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_depth: int = 16


class RequestRefused(Exception):
    """A request the guard answers itself, with an HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def json_depth(body: bytes) -> int:
    """How deeply `body`'s arrays and objects nest, by one scan (no recursion, strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def check_body(body: bytes, contract: RequestContract, limits: Limits) -> None:
    """Raise `RequestRefused` unless `body` is JSON within `limits` naming only the contract's fields."""
    if json_depth(body) > limits.max_depth:
        raise RequestRefused(400, f"request body nests deeper than {limits.max_depth} levels")
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestRefused(400, f"request body is not JSON ({err.__class__.__name__} at byte "
                                  f"{getattr(err, 'pos', getattr(err, 'start', 0))})") from None
    if not isinstance(request, dict):
        raise RequestRefused(400, 'request body must be a JSON object such as {"dataframe_records": [...]}')
    unknown_keys = sorted(set(request) - _ROW_KEYS - {"params"})
    if unknown_keys:
        raise RequestRefused(400, f"unknown request keys {unknown_keys}; expected one of {sorted(_ROW_KEYS)}")
    known = {spec.name for spec in (*contract.user_inputs, *contract.candidate_inputs)}
    for key in _ROW_KEYS & set(request):
        rows = request[key]
        if isinstance(rows, dict):  # dataframe_split: {"columns": [...], "data": [...]}
            names = set(rows.get("columns") or [])
        elif isinstance(rows, list):
            names = {name for row in rows if isinstance(row, dict) for name in row}
        else:
            continue
        unknown = sorted(names - known)
        if unknown:
            raise RequestRefused(400, f"unknown fields {unknown}; the model takes {sorted(known)}")


class RequestGuard:
    """ASGI middleware: checks POST /invocations bodies before the wrapped app sees them."""

    def __init__(self, app: ASGIApp, contract: RequestContract, limits: Limits) -> None:
        self.app, self.contract, self.limits = app, contract, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/invocations":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._body(scope, receive)
            check_body(body, self.contract, self.limits)
        except RequestRefused as refused:
            await _answer(send, refused.status, str(refused))
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        too_large = RequestRefused(413, f"request body larger than {self.limits.max_body_bytes} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            raise too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _answer(send: Send, status: int, message: str) -> None:
    """An error in MLflow's own shape, so clients handle it like the scoring server's."""
    body = json.dumps({"error_code": "INVALID_PARAMETER_VALUE" if status == 400 else "RESOURCE_LIMIT_EXCEEDED",
                       "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serving_app(model_uri: str, limits: Limits) -> ASGIApp:
    """The scoring app of the model at `model_uri` behind a `RequestGuard` built from its contract."""
    import mlflow
    from mlflow.pyfunc import scoring_server

    from pipeline.registry.registry import METADATA_KEY

    model = mlflow.pyfunc.load_model(model_uri)
    contract = RequestContract.from_manifest((model.metadata.metadata or {})[METADATA_KEY]["contract"])
    return RequestGuard(scoring_server.init(model), contract, limits)


def serve(model_uri: str, host: str, port: int, limits: Limits) -> None:
    """Serve `model_uri` on host:port until SIGTERM or SIGINT (uvicorn's own graceful shutdown)."""
    import uvicorn

    uvicorn.run(serving_app(model_uri, limits), host=host, port=port, log_level="info")
