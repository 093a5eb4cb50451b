"""The one shape of an HTTP refusal: a JSON body {"error": reason}, from every route we serve."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web

E = TypeVar("E", bound=web.HTTPException)


def json_error(exc_class: type[E], message: str, **kwargs: Any) -> E:
    """An aiohttp HTTP error to raise, saying why in JSON (kwargs: headers, ...)."""
    return exc_class(text=json.dumps({"error": message}), content_type="application/json", **kwargs)


def json_error_response(message: str, status: int, **kwargs: Any) -> web.Response:
    """The same body as a response to return (from a middleware, say)."""
    return web.json_response({"error": message}, status=status, **kwargs)
