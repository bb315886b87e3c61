"""Dependencies as ``Annotated`` aliases; everything heavy is built once in the lifespan."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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
