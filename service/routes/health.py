"""GET /healthz, GET /v1/models and the Prometheus exposition at GET /metrics."""

from __future__ import annotations

import math
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hwsurrogate import __version__
from hwsurrogate.service.deps import ConfigDep, ModelsDep
from hwsurrogate.service.schemas import Health, ModelList, ServedModel
from hwsurrogate.surrogates.api import MODEL_NAMES

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(request: Request, models: ModelsDep, config: ConfigDep) -> Health:
    """Liveness plus which tasks have a model loaded (answered on the event loop: no thread-pool wait).

    Models load at the first request that needs one (a prediction, ``GET /v1/models``, the device
    routes); until then every task shows ``false``. This probe never loads them.
    """
    return Health(
        status="ok",
        version=__version__,
        uptime_s=round(time.monotonic() - request.app.state.started, 3),
        store=config.store_name,  # the last name only: the full path or URI is the server's business
        models={task: task in models.predictors for task in MODEL_NAMES},
        writes_enabled=config.token is not None,
    )


@router.get("/v1/models", response_model=ModelList)
def list_models(models: ModelsDep) -> ModelList:
    """What each task serves: registered name, version, training metrics, or why it is missing."""
    models.ensure_loaded()
    out = []
    for task, name in MODEL_NAMES.items():
        p = models.predictors.get(task)
        if p is None:
            out.append(
                ServedModel(task=task, name=name, available=False, reason=models.unavailable.get(task))
            )
        else:
            out.append(
                ServedModel(
                    task=task,
                    name=p.name,
                    available=True,
                    version=str(p.version),
                    stage=models.stage(task) if task.startswith("fpga") else None,
                    metrics={k: float(v) for k, v in (p.metrics or {}).items() if math.isfinite(float(v))},
                    requests=getattr(p, "n_requests", None),
                    model_calls=getattr(p, "n_model_calls", None),
                )
            )
    return ModelList(models=out)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text format: request counts and latency histograms per route."""
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
