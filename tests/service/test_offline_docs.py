"""/docs and /redoc work offline: every script, style sheet and icon they load is served by the app."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import make_client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_assets_the_service_serves(tmp_path: Path, page: str) -> None:
    client, _, _ = make_client(tmp_path)
    with client:
        html = client.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html.text)
        urls = [u for pair in urls for u in pair if u]
        assert urls, html.text
        external = [u for u in urls if u.startswith(("http:", "https:", "//"))]
        assert not external, f"{page} loads {external} from outside (blank when offline)"
        for url in urls:
            got = client.get(url)
            assert got.status_code == 200 and len(got.content) > 100, url
        assert client.get("/openapi.json").json()["info"]["title"] == "hwsurrogate"


def test_swagger_ui_js_is_the_real_bundle(tmp_path: Path) -> None:
    client, _, _ = make_client(tmp_path)
    with client:
        js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and "SwaggerUIBundle" in js.text
