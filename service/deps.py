"""Dependencies as ``Annotated`` aliases; everything heavy is built once in the lifespan.

:class:`DirectRoute` resolves a route's dependencies without FastAPI's general solver, for the
hot single-query prediction route.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.service.adaptation import DeviceAdapter
from hwsurrogate.service.config import ServiceConfig
from hwsurrogate.service.lookup import ArchIndex
from hwsurrogate.service.served import ServedModels
from hwsurrogate.surrogates.predict import Dispatch
from hwsurrogate.surrogates.registry.adapted import load_adapted as load_adapted_gemm
from hwsurrogate.surrogates.registry.adapted import load_adapted_kernel

TOKEN_HELP = "start the service with `hws serve --token TOKEN` or set HWSURROGATE_SERVICE_TOKEN"


# The getters are ``async``: FastAPI then calls them on the event loop instead of handing each
# to the thread pool, so a cheap route (``/healthz``) does not queue behind busy download threads.
async def get_config(request: Request) -> ServiceConfig:
    return request.app.state.config


async def get_store(request: Request) -> DatasetStore:
    return request.app.state.store


async def get_models(request: Request) -> ServedModels:
    return request.app.state.models


async def get_adapter(request: Request) -> DeviceAdapter:
    return request.app.state.adapter


async def get_arch_index(request: Request) -> ArchIndex:
    return request.app.state.arch_index


async def get_dispatch(  # async: no thread-pool hop per request
    request: Request,
    models: Annotated[ServedModels, Depends(get_models)],
    adapter: Annotated[DeviceAdapter, Depends(get_adapter)],
    config: Annotated[ServiceConfig, Depends(get_config)],
) -> Dispatch:
    """The one served-or-adapted dispatch over the served models and the adapted devices.

    Built once per (models, adapter, registry folder) and kept on the app: the same object for
    every request, which is what lets the :class:`~.batching.RequestBatcher` merge them."""
    root = config.adapted_dir
    key = (models, adapter, root)
    cached = getattr(request.app.state, "dispatch", None)
    if cached is not None and all(a is b for a, b in zip(cached[0], key, strict=True)):
        return cached[1]
    dispatch = Dispatch(
        models.require,
        latency_devices=adapter,
        gemm_devices=lambda device: load_adapted_gemm(device, root),
        hlsyn_kernels=lambda kernel: load_adapted_kernel(kernel, root),
    )
    request.app.state.dispatch = (key, dispatch)
    return dispatch


_bearer = HTTPBearer(auto_error=False, description="Token given to `hws serve --token`; required for writes.")


def require_write_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> None:
    """Writes need ``Authorization: Bearer <token>``; without a configured token they are refused."""
    expected = request.app.state.config.token
    if expected is None:
        raise HTTPException(403, detail=f"writes are disabled: no token is configured; {TOKEN_HELP}")
    if credentials is None:
        raise HTTPException(
            401,
            detail="missing bearer token: send 'Authorization: Bearer <token>' for writes",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(401, detail="invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


ConfigDep = Annotated[ServiceConfig, Depends(get_config)]
StoreDep = Annotated[DatasetStore, Depends(get_store)]
ModelsDep = Annotated[ServedModels, Depends(get_models)]
AdapterDep = Annotated[DeviceAdapter, Depends(get_adapter)]
ArchIndexDep = Annotated[ArchIndex, Depends(get_arch_index)]
DispatchDep = Annotated[Dispatch, Depends(get_dispatch)]
WriteAuth = Depends(require_write_token)


#: the parameters a :class:`DirectRoute` dependency may not have: anything but the request
_NOT_DIRECT = ("path_params", "query_params", "header_params", "cookie_params", "body_params")
_NOT_DIRECT_NAMES = ("websocket_param_name", "http_connection_param_name", "response_param_name",
                     "background_tasks_param_name", "security_scopes_param_name")  # fmt: skip


def _direct_refusal(dependant: Dependant, where: str) -> str | None:
    """Why ``dependant`` (a route's endpoint or one of its dependencies) cannot be resolved directly."""
    for attr in _NOT_DIRECT:
        params = getattr(dependant, attr)
        if params:
            return f"{where} takes {attr.replace('_', ' ')} ({', '.join(p.name for p in params)})"
    for attr in _NOT_DIRECT_NAMES:
        if getattr(dependant, attr):
            return f"{where} takes a {attr.removesuffix('_param_name').replace('_', ' ')} parameter"
    if not inspect.iscoroutinefunction(dependant.call):
        return f"{where} is not an `async def` function"
    for sub in dependant.dependencies:
        why = _direct_refusal(sub, f"dependency {getattr(sub.call, '__name__', sub.call)!r}")
        if why is not None:
            return why
    return None


async def _solve_direct(dependant: Dependant, request: Request, cache: dict[Any, Any]) -> dict[str, Any]:
    """The keyword arguments of ``dependant.call``: its dependencies awaited depth first, each
    once per request unless declared ``Depends(..., use_cache=False)`` (FastAPI's rule), and the
    request itself."""
    kwargs: dict[str, Any] = {}
    for sub in dependant.dependencies:
        if sub.use_cache and sub.call in cache:
            value = cache[sub.call]
        else:
            value = await sub.call(**await _solve_direct(sub, request, cache))
            if sub.use_cache:
                cache[sub.call] = value
        kwargs[sub.name] = value  # type: ignore[index]
    if dependant.request_param_name:
        kwargs[dependant.request_param_name] = request
    return kwargs


class DirectRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` whose dependencies are awaited directly.

    FastAPI's general solver (``solve_dependencies``) handles every kind of parameter, overrides,
    generators and security scopes; for the single-GEMM route it cost ~45 us of a request's
    ~0.3 ms of CPU (in-process ASGI, 32 concurrent; timed with an ad-hoc script, see
    docs/service.md), against ~7 us for a route taking only the request. A ``DirectRoute`` may depend only on ``async def`` dependencies whose own parameters
    are the :class:`~fastapi.Request` and further such dependencies; the endpoint is ``async``
    and returns a :class:`~starlette.responses.Response`. Those it awaits in order, each once
    per request, and calls the endpoint: the same values FastAPI would pass. Errors raised on
    the way (``RequestValidationError``, ``HTTPException``, the service's errors) reach the same
    exception handlers. OpenAPI, the route's body limit and its other settings are FastAPI's.

    Where the app has ``dependency_overrides`` (tests, or a user's), a request goes through
    FastAPI's own handler, so overrides keep working. A route that does not qualify is refused
    when it is built, naming the parameter. Give its router no router-level ``dependencies``:
    only the route's own are seen here.
    """

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        general = super().get_route_handler()
        why = _direct_refusal(self.dependant, f"endpoint {self.name!r}")
        if why is not None:
            raise TypeError(f"DirectRoute {self.path}: {why}; use APIRoute instead")
        dependant = self.dependant
        endpoint = dependant.call
        provider = self.dependency_overrides_provider

        async def handler(request: Request) -> Response:
            # the app's overrides (an included route's provider is the app: check it, not only ours)
            if getattr(request.app, "dependency_overrides", None) or getattr(provider, "dependency_overrides", None):
                return await general(request)
            response = await endpoint(**await _solve_direct(dependant, request, {}))
            if not isinstance(response, Response):
                raise TypeError(f"DirectRoute {self.path}: the endpoint returned {type(response).__name__}, not a Response")
            return response

        return handler
