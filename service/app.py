"""``create_app``: the FastAPI application, its lifespan (store and adapter opened once; models
loaded once, on first need) and error mapping.

    from hwsurrogate.service.app import create_app, ServiceConfig
    app = create_app(ServiceConfig(store=Path("store"), token="s3cret-token"))

OpenAPI docs at ``/docs``; Prometheus metrics at ``/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from hwsurrogate import __version__
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.service.adaptation import open_adapter
from hwsurrogate.service.batching import RequestBatcher
from hwsurrogate.service.body import add_body_schemas
from hwsurrogate.service.config import ServiceConfig
from hwsurrogate.service.errors import install_error_handlers
from hwsurrogate.service.lookup import ArchIndex
from hwsurrogate.service.middleware import BodyLimitMiddleware, MetricsMiddleware
from hwsurrogate.service.routes import datasets, devices, fpga, gemm, health, latency, model
from hwsurrogate.service.served import ServedModels, serving_gc

__all__ = ["ServiceConfig", "create_app", "create_app_from_env"]

log = logging.getLogger("hwsurrogate.service")

DESCRIPTION = """
Predict GEMM runtime/power/energy, architecture latency on known or few-shot-adapted devices,
and FPGA resources/cycles; browse, download and upload measurements.

Reads are open. Writes (uploads, device registration) need `Authorization: Bearer <token>`
(the token given to `hws serve --token` or HWSURROGATE_SERVICE_TOKEN). Every 4xx body is JSON
`{"detail": ..., "field": ...}` naming the offending field.
"""


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    """Build the service. Store and few-shot registry are opened once, in the lifespan; the models
    once, by the first request that needs one (:meth:`ServedModels.lazy`), or in the lifespan
    with ``preload_models``."""
    config = config or ServiceConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        t0 = time.perf_counter()
        app.state.store = DatasetStore(config.store)
        app.state.arch_index = ArchIndex(app.state.store)
        # models load at the first request that needs one (MLflow stays unimported until then)
        app.state.models = ServedModels.lazy(config.model_versions, batching=config.batching, store=config.store) if config.load_models else ServedModels(
            unavailable={t: "model loading disabled (load_models=False)" for t in ("gemm", "latency", "fpga-hls4ml", "fpga-hlsyn")}
        )  # fmt: skip
        app.state.adapter = open_adapter(config.adapted_dir, store=config.store)
        if config.preload_models:
            app.state.models.ensure_loaded()  # ready only once they are (--preload-models)
        with serving_gc():  # the modules and tables loaded so far live as long as the process
            log.info("service ready in %.1f s (store %s)", time.perf_counter() - t0, config.store)
            yield

    app = FastAPI(
        title="hwsurrogate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: the defaults load them from a CDN
        redoc_url=None,
    )
    app.state.config = config
    app.state.started = time.monotonic()
    app.state.metrics_registry = CollectorRegistry()
    app.state.request_batcher = RequestBatcher() if config.batching else None
    install_error_handlers(app)
    add_body_schemas(app)
    for module in (health, gemm, latency, fpga, devices, datasets, model):
        app.include_router(module.router)
    add_offline_docs(app)
    # outermost first: the body limit answers before anything reads the body; metrics see every status
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(MetricsMiddleware, registry=app.state.metrics_registry)
    return app


#: where the interactive docs' JavaScript/CSS are served from (this process, not a CDN)
DOCS_ASSETS = "/docs-assets"


def docs_assets_dir() -> Path:
    """The Swagger UI and ReDoc files shipped by the ``fastapi-offline`` package (MIT)."""
    from importlib.resources import files

    return Path(str(files("fastapi_offline") / "static"))


def add_offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) with every asset served by this app, so they work offline.

    FastAPI's own page builders (``get_swagger_ui_html``, ``get_redoc_html``) pointed at a
    static mount of the packaged files, as FastAPI's "self-hosting JavaScript and CSS for docs"
    recipe does.
    """
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.staticfiles import StaticFiles
    from starlette.responses import HTMLResponse

    app.mount(DOCS_ASSETS, StaticFiles(directory=docs_assets_dir()), name="docs-assets")
    title = f"{app.title} {app.version}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def create_app_from_env() -> FastAPI:
    """uvicorn factory for ``hws serve`` (settings travel to worker processes via the environment)."""
    return create_app(ServiceConfig.from_env())
