"""The one shape of an HTTP refusal: a JSON body {"error": reason}, from every route we serve;
and the one reader of a JSON body (or a socket's JSON frame), which refuses hostile input with a
reason before it reaches a handler: a charset other than UTF-8, bytes that are not UTF-8, nesting
deeper than a handler needs, lone surrogates (or cleans them, where a customer's message must
still be accepted), and NaN or Infinity, which are not JSON."""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypeVar

from aiohttp import web

from router.core.text import SURROGATE, unicode_safe

E = TypeVar("E", bound=web.HTTPException)

MAX_JSON_DEPTH = 32
UTF8_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
Surrogates = Literal["reject", "replace"]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_error(exc_class: type[E], message: str, **kwargs: Any) -> E:
    """An aiohttp HTTP error to raise, saying why in JSON (kwargs: headers, ...)."""
    return exc_class(text=json.dumps({"error": message}), content_type="application/json", **kwargs)


def json_error_response(message: str, status: int, **kwargs: Any) -> web.Response:
    """The same body as a response to return (from a middleware, say)."""
    return web.json_response({"error": message}, status=status, **kwargs)


class BadJson(ValueError):
    """Why a body or frame is refused (\"nested deeper than 32 levels\"); safe to send back."""


def _check_depth(text: str, max_depth: int) -> None:
    """Counts brackets outside strings, so a 5,000-deep array is refused before json.loads
    recurses into it (the C scanner would raise RecursionError, or worse, at depth ~1,000)."""
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub('""', text)):
        if bracket in "[{":
            depth += 1
            if depth > max_depth:
                raise BadJson(f"nested deeper than {max_depth} levels")
        else:
            depth -= 1


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"{name} is not JSON")


def _clean(value: Any, surrogates: Surrogates) -> Any:
    """Strings (keys too) checked for lone surrogates; the depth is already bounded."""
    if isinstance(value, str):
        if surrogates == "replace":
            return unicode_safe(value)
        # json.loads joins a valid pair of escapes into one character: what is left is lone.
        if SURROGATE.search(value):
            raise BadJson("a string holds a lone surrogate (\\ud800-\\udfff)")
        return value
    if isinstance(value, dict):
        return {_clean(k, surrogates): _clean(v, surrogates) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, surrogates) for v in value]
    return value


def clean_strings(value: Any) -> Any:
    """`value` (parsed JSON, of bounded depth) with every string made `unicode_safe`."""
    return _clean(value, "replace")


def parse_json(
    data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, surrogates: Surrogates = "reject"
) -> Any:
    """`data` as JSON, or BadJson saying why not."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BadJson("not valid UTF-8") from None
    else:
        text = data
    _check_depth(text, max_depth)
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except BadJson:
        raise
    except (ValueError, RecursionError):
        raise BadJson("not valid JSON") from None
    return _clean(value, surrogates)


def charset_problem(request: web.BaseRequest) -> str | None:
    """A reason to refuse the request's declared charset, if it is not UTF-8 (or ASCII)."""
    charset = request.charset
    if charset is None or charset.strip().lower() in UTF8_CHARSETS:
        return None
    return f"charset {charset[:40]!r} is not supported: send UTF-8"


async def read_json(
    request: web.Request,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    surrogates: Surrogates = "reject",
    require_object: bool = True,
    what: str = "body",
) -> Any:
    """The request's JSON body (an object unless `require_object` is False), or a 4xx with a
    reason naming `what` the body should be: 415 for a charset other than UTF-8, 413 beyond the app's client_max_size, 400 for
    the rest."""
    problem = charset_problem(request)
    if problem is not None:
        raise json_error(web.HTTPUnsupportedMediaType, problem)
    body = await request.read()  # raises 413 past client_max_size
    try:
        value = parse_json(body, max_depth=max_depth, surrogates=surrogates)
    except BadJson as exc:
        raise json_error(web.HTTPBadRequest, f"{what} is not JSON we accept: {exc}") from None
    if require_object and not isinstance(value, dict):
        raise json_error(web.HTTPBadRequest, f"{what} must be a JSON object")
    return value
