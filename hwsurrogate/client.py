"""A small typed client of ``hws serve``.

    from hwsurrogate.client import HwsClient
    with HwsClient("http://127.0.0.1:8000", token="...") as hws:
        hws.upload_rows("gemm", frame)            # {'added': 120, 'duplicates': 0, ...}
        hws.predict_gemm([{"device": "neusight/Tesla_T4", "op": "bmm", "m": 1024, "n": 1024, "k": 1024, "batch": 16}])

Every non-2xx answer raises :class:`ServiceError` carrying the status and the server's ``detail``.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import polars as pl

from hwsurrogate.errors import HwSurrogateError


class ServiceError(HwSurrogateError):
    """The service answered with an error status."""

    def __init__(self, status_code: int, detail: Any, field: str | None = None) -> None:
        self.status_code = status_code
        self.detail = detail
        self.field = field
        where = f" (field {field})" if field else ""
        super().__init__(f"HTTP {status_code}{where}: {detail}")


class HwsClient:
    """Typed calls to a running ``hws serve``; ``token`` is needed for uploads and device registration."""

    def __init__(
        self, base_url: str, token: str | None = None, timeout: float = 30, *, client_name: str | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.client_name = client_name or _default_client_name()
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> HwsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        resp = self._http.request(method, path, **kwargs)
        if resp.status_code >= 400:
            try:
                body = resp.json()
                detail, field = body.get("detail", body), body.get("field")
            except ValueError:
                detail, field = resp.text[:500], None
            raise ServiceError(resp.status_code, detail, field)
        return resp

    # ------------------------------------------------------------------ datasets
    def upload_rows(self, kind: str, frame: pl.DataFrame) -> dict[str, Any]:
        """Upload measurement rows (sent as parquet); returns received / added / duplicates counts."""
        buf = io.BytesIO()
        frame.write_parquet(buf)
        resp = self._call(
            "POST",
            f"/v1/datasets/{kind}/rows",
            params={"client": self.client_name},
            content=buf.getvalue(),
            headers={"Content-Type": "application/vnd.apache.parquet"},
        )
        return resp.json()

    def check_upload(self, kind: str, *, timeout: float = 5.0) -> None:
        """Raise :class:`ServiceError` now if an upload of ``kind`` rows would be refused; writes nothing.

        Sends an upload with no rows: the service checks the bearer token first (401/403), then
        refuses the empty upload (422), which here means "token and kind accepted".
        """
        try:
            self._call("POST", f"/v1/datasets/{kind}/rows", json={"rows": []}, timeout=timeout)
        except ServiceError as exc:
            if exc.status_code != 422:
                raise

    def datasets(self) -> list[dict[str, Any]]:
        """Every table kind with its row count per source."""
        return self._call("GET", "/v1/datasets").json()["datasets"]

    def dataset(self, kind: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/datasets/{kind}").json()

    def read_rows(
        self, kind: str, *, device: str | None = None, source: str | None = None, space: str | None = None,
        limit: int = 1000, offset: int = 0,
    ) -> pl.DataFrame:  # fmt: skip
        """A page of rows as a polars frame (downloaded as parquet)."""
        params = {
            k: v for k, v in {"device": device, "source": source, "space": space}.items() if v is not None
        }
        resp = self._call(
            "GET",
            f"/v1/datasets/{kind}/rows",
            params={**params, "limit": limit, "offset": offset, "format": "parquet"},
        )
        return pl.read_parquet(io.BytesIO(resp.content))

    # ------------------------------------------------------------------ predictions
    def predict_gemm(self, queries: Sequence[Mapping[str, Any]] | pl.DataFrame) -> dict[str, Any]:
        """``queries``: dicts (or a frame) with device, op, m, n, k, batch, dtype, layout."""
        rows = queries.to_dicts() if isinstance(queries, pl.DataFrame) else list(queries)
        return self._call("POST", "/v1/predict/gemm", json={"queries": rows}).json()

    def predict_latency(
        self, device: str, space: str, *, arch_keys: Sequence[str] = (), arch_indices: Sequence[int] = ()
    ) -> dict[str, Any]:
        archs = [{"arch_key": k} for k in arch_keys] + [{"arch_index": int(i)} for i in arch_indices]
        return self._call(
            "POST", "/v1/predict/latency", json={"device": device, "space": space, "archs": archs}
        ).json()

    def predict_fpga(self, designs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``designs``: {"type": "hls4ml", "layers": [...], "config": {...}} or {"type": "hls", "kernel", "pragmas"}."""
        return self._call("POST", "/v1/predict/fpga", json={"designs": list(designs)}).json()

    # ------------------------------------------------------------------ devices and models
    def register_device(
        self,
        device_id: str,
        *,
        fingerprint: Mapping[str, Mapping[int | str, float]] | None = None,
        measurements: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Adapt a latency predictor to an unseen device from a fingerprint and/or measurements."""
        body: dict[str, Any] = {"device_id": device_id}
        if fingerprint:
            body["fingerprint"] = {
                s: {str(i): float(v) for i, v in t.items()} for s, t in fingerprint.items()
            }
        if measurements:
            body["measurements"] = list(measurements)
        return self._call("POST", "/v1/devices", json=body).json()

    def list_devices(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/devices").json()["devices"]

    def device(self, device_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/devices/{device_id}").json()

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models").json()["models"]

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz").json()


def _default_client_name() -> str:
    name = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in socket.gethostname())[:64].strip(
        "-._"
    )
    return name or "client"
