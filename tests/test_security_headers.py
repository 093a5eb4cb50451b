"""Every answer carries the browser-facing protections; the pages run no inline script."""

from __future__ import annotations

import re

import pytest

from channels.chat.adapter import STATIC as CHAT_STATIC
from router.services.gateway import STATIC as CONSOLE_STATIC

PATHS = [
    "/console/",
    "/console/console.js",
    "/chat/",
    "/chat/widget.js",
    "/healthz",
    "/",
    "/api/queues",  # a 401
    "/no/such/page",  # a 404
]


def csp_directives(header: str) -> dict[str, list[str]]:
    parts = (d.split() for d in header.split(";") if d.strip())
    return {p[0]: p[1:] for p in parts}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("broker_kind", ["tansu"], indirect=True)
async def test_every_answer_has_the_security_headers(running_router):
    r = running_router
    for path in PATHS:
        async with r.http.get(r.url(path)) as resp:
            h = resp.headers
            assert h.get("X-Content-Type-Options") == "nosniff", path
            assert h.get("Referrer-Policy") == "no-referrer", path
            assert h.get("X-Frame-Options") == "DENY", path
            csp = csp_directives(h.get("Content-Security-Policy", ""))
            assert csp.get("script-src") == ["'self'"], path
            assert csp.get("frame-ancestors") == ["'none'"], path
            assert csp.get("object-src") == ["'none'"], path


@pytest.mark.parametrize("page", [CONSOLE_STATIC / "console.html", CHAT_STATIC / "chat.html"])
def test_the_pages_have_no_inline_script_or_handlers(page):
    html = page.read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL | re.IGNORECASE)
    assert scripts, "each page loads its script from a file"
    assert all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE)
    assert "javascript:" not in html
