"""The one served-or-adapted dispatch: every prediction of ``hws predict`` and of the service goes here.

A query names a device. For each device the dispatch decides, in one place, which model answers:

- ``latency``: a device adapted with ``hws adapt`` / ``POST /v1/devices`` answers with its few-shot
  head; any other device with the served ``hws-latency`` model (which names unknown devices).
- ``gemm``: a device the served ``hws-gemm`` model was trained on answers with it; otherwise a
  device adapted with ``hws adapt --task gemm`` answers with the served model plus its correction
  (a warning when it was adapted on another model version); otherwise the served model refuses it.
- ``fpga-hls4ml`` / ``fpga-hlsyn``: the served model.

The caller says where served models come from (``served(task) -> Predictor``: the CLI loads the
champion once on first use, the service its models, loaded by the first request needing one) and where
adapted devices live (:class:`StoredLatencyDevices` over the store, or the service's adapter).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import polars as pl

from hwsurrogate.surrogates.api import INPUTS, NOTE_COLUMN, OUTPUTS, Predictor

__all__ = [
    "AdaptedLatency",
    "Answer",
    "Dispatch",
    "ModelRef",
    "RegistryModels",
    "StoredLatencyDevices",
    "local_dispatch",
    "training_domain",
]


@dataclass(frozen=True)
class ModelRef:
    """A model that answered: registered name and version."""

    name: str
    version: str


@dataclass
class Answer:
    """Outputs of one ``predict`` call and which models produced them."""

    outputs: pl.DataFrame  #: the task's output columns, one row per query, in query order
    predictor: str  #: "served", "adapted" or "mixed" (a batch with devices of both kinds)
    models: list[ModelRef] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: per query row: inside the answering model's training domain (True/False), or None when the
    #: model has no recorded domain (saved before domains were recorded): "unknown"
    in_domain: list[bool | None] = field(default_factory=list)

    @property
    def model(self) -> ModelRef:
        """The one model that answered (the first when several did)."""
        return self.models[0]


class AdaptedLatency(Protocol):
    """Adapted latency devices as the dispatch needs them (the store's, or the service's adapter)."""

    def get(self, device_id: str) -> Any | None:
        """The device's record (with ``model_name`` and ``model_version``), or None when not adapted."""
        ...

    def predict_latency(self, device_id: str, queries: pl.DataFrame) -> pl.DataFrame:
        """``latency_ms`` per query row (columns device_id, space, arch_key)."""
        ...


class StoredLatencyDevices:
    """:class:`AdaptedLatency` over the store's adapted devices (``<store>/adapted/latency``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry

        self.registry = AdaptedDeviceRegistry(root)

    def get(self, device_id: str) -> Any | None:
        try:
            if not self.registry.device_path(device_id).is_file():  # cheap miss for served devices
                return None
            return self.registry.get(device_id)
        except (ValueError, LookupError):  # a name no adapted device can have, or removed meanwhile
            return None

    def predict_latency(self, device_id: str, queries: pl.DataFrame) -> pl.DataFrame:
        parts = []
        for (space,), part in queries.with_row_index("_q").group_by(["space"], maintain_order=True):
            ms = self.registry.predict_latency(device_id, str(space), part["arch_key"].to_list())
            parts.append(pl.DataFrame({"_q": part["_q"], "latency_ms": pl.Series(ms, dtype=pl.Float64)}))
        return pl.concat(parts).sort("_q").drop("_q")


class RegistryModels:
    """``served(task)`` for short-lived callers: the registered champion (or a pinned version), loaded once.

    Loads through :func:`~hwsurrogate.surrogates.registry.cache.load_served`: a local copy
    under the store keyed by name, version and run id, so a one-off ``hws predict`` skips
    MLflow's model loading (and MLflow's import while the local pointer is current).
    """

    def __init__(
        self, versions: dict[str, str | None] | None = None, store_root: str | os.PathLike[str] | None = None
    ) -> None:
        self.versions = dict(versions or {})
        self.store_root = store_root
        self._loaded: dict[str, Predictor] = {}

    def __call__(self, task: str) -> Predictor:
        if task not in self._loaded:
            from hwsurrogate.surrogates.registry.cache import load_served

            self._loaded[task] = load_served(
                task, version=self.versions.get(task), store_root=self.store_root
            )
        return self._loaded[task]


def _ref(predictor: Any) -> ModelRef:
    return ModelRef(str(predictor.name), str(predictor.version))


def training_domain(predictor: Any) -> dict[str, Any] | None:
    """The training domain a served predictor's model recorded at fit time (None: unknown)."""
    model = getattr(predictor, "native", None)
    if model is None:
        try:
            from hwsurrogate.surrogates.registry.artifact_model import project_model

            model = project_model(predictor.model)  # e.g. the latency pyfunc
        except Exception:
            model = predictor
    domain = getattr(model, "training_domain", None)
    return domain if isinstance(domain, dict) else None


def _judge(
    domain: dict[str, Any] | None, part: pl.DataFrame, rows: list[int], who: str, strict: bool
) -> tuple[list[bool | None], list[str]]:
    """``in_domain`` per row of ``part`` (query rows ``rows``) and the warnings; raises under ``strict``.

    The one place queries are checked against a training domain (:mod:`hwsurrogate.surrogates.domain`).
    """
    from hwsurrogate.surrogates.domain import domain_issues

    return _verdict(None if domain is None else domain_issues(domain, part), rows, who, strict)


def _verdict(
    issues: list[list[str]] | None, rows: list[int], who: str, strict: bool
) -> tuple[list[bool | None], list[str]]:
    """:func:`_judge` from the rows' domain issues already found (None: the domain is unknown)."""
    if issues is None:
        return [None] * len(rows), [
            f"training domain of {who} unknown (saved before domains were recorded): not checked"
        ]
    bad = [i for i, reasons in enumerate(issues) if reasons]
    if not bad:
        return [True] * len(rows), []
    first = bad[0]
    where = f"query row {rows[first]}: {'; '.join(issues[first])}"
    if strict:
        raise ValueError(
            f"outside the training domain of {who}: {where} (strict: refused; without strict it is answered with a warning)"
        )
    more = (
        f" (rows {', '.join(map(str, [rows[i] for i in bad[:10]]))}{' ...' if len(bad) > 10 else ''})"
        if len(bad) > 1
        else ""
    )
    return [not reasons for reasons in issues], [
        f"{len(bad)} of {len(rows)} queries lie outside the training domain of {who}{more}; {where}"
    ]


def _notes(outputs: pl.DataFrame, rows: list[int]) -> tuple[pl.DataFrame, list[str]]:
    """A model's per-row notes (:data:`~.api.NOTE_COLUMN`) as warnings, the column dropped."""
    if NOTE_COLUMN not in outputs.columns:
        return outputs, []
    notes = outputs[NOTE_COLUMN].to_list()
    return outputs.drop(NOTE_COLUMN), [f"query row {rows[i]}: {n}" for i, n in enumerate(notes) if n]


#: a query frame of up to this many rows has its devices listed in Python (see :func:`_devices_of`)
FEW_ROWS = 64


def _devices_of(queries: pl.DataFrame) -> list[str | None]:
    """The distinct ``device_id`` values in order of first appearance (as strings; None for null).

    Up to :data:`FEW_ROWS` rows from the values in Python: polars' ``unique`` costs ~30 us even
    on one row (most of a one-query call's dispatch)."""
    ids = queries.get_column("device_id").cast(pl.String)
    if queries.height <= FEW_ROWS:
        return list(dict.fromkeys(ids.to_list()))
    return ids.unique(maintain_order=True).to_list()


def _kind(kinds: set[str]) -> str:
    return kinds.pop() if len(kinds) == 1 else "mixed"


class Dispatch:
    """Answers ``predict(task, queries)`` with the served model or the device's adaptation.

    ``served(task)`` returns the served :class:`~hwsurrogate.surrogates.api.Predictor` of a task
    (raising when there is none); ``latency_devices`` and ``gemm_devices(device_id)`` look up
    adapted devices (None: no adapted devices of that task).
    """

    def __init__(
        self,
        served: Callable[[str], Predictor],
        *,
        latency_devices: AdaptedLatency | None = None,
        gemm_devices: Callable[[str], Any | None] | None = None,
        hlsyn_kernels: Callable[[str], Any | None] | None = None,
    ) -> None:
        self.served = served
        self.latency_devices = latency_devices
        self.gemm_devices = gemm_devices
        self.hlsyn_kernels = hlsyn_kernels

    def predict(self, task: str, queries: pl.DataFrame, *, strict: bool = False) -> Answer:
        """One output row per query row, in order; a ValueError names a bad column or value.

        Every answer says per row whether the query lies inside the answering model's training
        domain (``Answer.in_domain``), with a warning for rows that do not; ``strict`` refuses
        them instead (a ValueError naming the row and the field).
        """
        if task not in INPUTS:
            raise ValueError(f"unknown task {task!r}; expected one of {sorted(INPUTS)}")
        names = queries.columns  # a new list per call: read once
        missing = [c for c in INPUTS[task] if c not in names]
        if missing:
            raise ValueError(f"{task} queries miss column(s) {missing}")
        if task == "latency":
            return self._per_device(queries, lambda d, p, r: self._latency_part(d, p, r, strict))
        if task == "gemm":
            return self._gemm(queries, strict)
        if task == "fpga-hlsyn" and self.hlsyn_kernels is not None:
            return self._hlsyn(queries, strict)
        predictor = self.served(task)
        return self._served_part(predictor, queries, list(range(queries.height)), strict)

    def predict_many(
        self, task: str, queries: pl.DataFrame, sizes: Sequence[int], *, strict: bool = False
    ) -> list[Answer | Exception]:
        """``predict(task, part)`` for each part of ``queries`` (``sizes[i]`` rows each, one after
        another): the same answer, or the exception it raises, per part.

        Parts the served model answers alone (GEMM queries on devices it was trained on, the FPGA
        tasks without adapted kernels) share one domain check and one model call, which is what
        a server answering many concurrent single queries needs; warnings, ``in_domain`` flags
        and refusals are still per part, row numbers counted within it. Every other part, and
        every part of a merged model call that fails, is answered alone by :meth:`predict`.
        """
        if sum(sizes) != queries.height:
            raise ValueError(f"sizes add up to {sum(sizes)} rows; queries has {queries.height}")
        starts = list(itertools.accumulate(sizes, initial=0))
        sliced: dict[int, pl.DataFrame] = {}

        def part(i: int) -> pl.DataFrame:  # sliced only where needed: ~2 us a part
            if i not in sliced:
                sliced[i] = queries.slice(starts[i], sizes[i])
            return sliced[i]

        answers: list[Answer | Exception | None] = [None] * len(sizes)
        together = self._shared_served(task, queries, part, len(sizes)) if len(sizes) > 1 else None
        if together is not None and len(together[1]) > 1:
            predictor, which = together
            merged = queries if len(which) == len(sizes) else pl.concat([part(i) for i in which])
            self._answer_together(predictor, merged, [sizes[i] for i in which], strict, answers, which)
        for i, answer in enumerate(answers):
            if answer is None:
                try:
                    answers[i] = self.predict(task, part(i), strict=strict)
                except Exception as exc:  # noqa: BLE001 - this part's own error, handed to its caller
                    answers[i] = exc
        return answers  # type: ignore[return-value]

    def _shared_served(
        self, task: str, queries: pl.DataFrame, part: Callable[[int], pl.DataFrame], n_parts: int
    ) -> tuple[Predictor, list[int]] | None:
        """The served predictor and the indices of the ``n_parts`` parts of ``queries`` (``part(i)``)
        that :meth:`predict` would hand to it alone (one :meth:`_served_part` call each); None when none."""
        if task not in ("gemm", "fpga-hls4ml") and not (task == "fpga-hlsyn" and self.hlsyn_kernels is None):
            return None
        names = queries.columns
        if any(c not in names for c in INPUTS[task]):
            return None
        try:
            predictor = self.served(task)
        except Exception:  # noqa: BLE001 - predict raises it again, per part
            return None
        every = list(range(n_parts))
        native = getattr(predictor, "native", None)
        known = getattr(native, "devices", None)
        if task != "gemm" or self.gemm_devices is None or native is None or known is None:
            return predictor, every

        def all_known(frame: pl.DataFrame) -> bool:
            return all(d in known for d in _devices_of(frame))

        if all_known(queries):  # the common case: one check for all
            return predictor, every
        return predictor, [i for i in every if all_known(part(i))]

    @staticmethod
    def _answer_together(
        predictor: Predictor,
        merged: pl.DataFrame,
        sizes: list[int],
        strict: bool,
        answers: list[Answer | Exception | None],
        where: list[int],
    ) -> None:
        """:meth:`_served_part` for each part of ``merged`` (``sizes[j]`` rows, its answer put at
        ``answers[where[j]]``) in one domain check and one model call; on a model error nothing is
        put (each part is then answered alone)."""
        from hwsurrogate.surrogates.domain import domain_issues

        who = f"{predictor.name} v{predictor.version}"
        domain = training_domain(predictor)
        issues = None if domain is None else domain_issues(domain, merged)
        verdicts: dict[int, tuple[list[bool | None], list[str]]] = {}
        starts = list(itertools.accumulate(sizes, initial=0))
        for j, n in enumerate(sizes):
            at = starts[j]
            if issues is not None and not any(issues[at : at + n]):  # inside: no warning to word
                inside: list[bool | None] = [True] * n
                verdicts[j] = inside, []
                continue
            try:
                verdicts[j] = _verdict(
                    None if issues is None else issues[at : at + n], list(range(n)), who, strict
                )
            except ValueError as exc:  # refused under strict: this part only
                answers[where[j]] = exc
        if not verdicts:
            return
        if len(verdicts) < len(sizes):
            merged = pl.concat([merged.slice(starts[j], sizes[j]) for j in verdicts])
        try:
            outputs = predictor.predict(merged)
        except Exception:  # noqa: BLE001 - answered part by part, so the error reaches only its own request
            return
        if outputs.height != merged.height:
            return
        offset = 0
        noted = NOTE_COLUMN in outputs.columns
        ref = _ref(predictor)
        for j, (in_domain, warnings) in verdicts.items():
            n = sizes[j]
            out, notes = outputs.slice(offset, n), []
            if noted:
                out, notes = _notes(out, list(range(n)))
            answers[where[j]] = Answer(out, "served", [ref], warnings + notes, in_domain)
            offset += n

    def tasks_of(self, device_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """Per device, the device-keyed tasks that can answer it and how: ``{"gemm": "served"}``,
        ``{"latency": "adapted"}`` ... (empty: no model predicts it). A task without a served
        model, or whose model recorded no per-device domain, serves none of them."""
        out: dict[str, dict[str, str]] = {d: {} for d in device_ids}
        for task in ("gemm", "latency"):
            try:
                predictor = self.served(task)
            except Exception:  # no served model of this task
                continue
            domain = training_domain(predictor) or {}
            regions = domain.get("regions", {}) if domain.get("by") == "device_id" else {}
            for d in device_ids:
                if d in regions:
                    out[d][task] = "served"
        for d in device_ids:
            if self.latency_devices is not None and self.latency_devices.get(d) is not None:
                out[d]["latency"] = "adapted"
            if "gemm" not in out[d] and self.gemm_devices is not None and self.gemm_devices(d) is not None:
                out[d]["gemm"] = "adapted"
        return out

    # ------------------------------------------------------------------ per device
    @staticmethod
    def _per_device(
        queries: pl.DataFrame, answer: Callable[[str, pl.DataFrame, list[int]], Answer]
    ) -> Answer:
        """``answer(device, its rows, their query row numbers)`` for each device, put back in query order."""
        devices = _devices_of(queries)
        if len(devices) == 1:  # the common case: no split, no re-ordering
            return answer(devices[0], queries, list(range(queries.height)))
        indexed = queries.with_row_index("_q")
        parts, kinds, refs, warnings, flags = [], set(), [], [], []
        for device in devices:
            part = indexed.filter(pl.col("device_id") == device)
            rows = part["_q"].to_list()
            got = answer(device, part.drop("_q"), rows)
            kinds.add(got.predictor)
            refs += [r for r in got.models if r not in refs]
            warnings += [w for w in got.warnings if w not in warnings]
            flags += list(zip(rows, got.in_domain, strict=True))
            parts.append(pl.concat([part.select("_q"), got.outputs], how="horizontal"))
        outputs = pl.concat(parts, how="diagonal_relaxed").sort("_q").drop("_q")
        return Answer(outputs, _kind(kinds), refs, warnings, [f for _, f in sorted(flags)])

    @staticmethod
    def _served_part(predictor: Predictor, part: pl.DataFrame, rows: list[int], strict: bool) -> Answer:
        """The served model's answer, checked against its training domain first."""
        who = f"{predictor.name} v{predictor.version}"
        in_domain, warnings = _judge(training_domain(predictor), part, rows, who, strict)
        outputs, notes = _notes(predictor.predict(part), rows)
        return Answer(outputs, "served", [_ref(predictor)], warnings + notes, in_domain)

    def _latency_part(self, device: str, part: pl.DataFrame, rows: list[int], strict: bool) -> Answer:
        info = self.latency_devices.get(device) if self.latency_devices is not None else None
        if info is not None:  # its spaces are its domain: other spaces are refused by the registry
            out = self.latency_devices.predict_latency(device, part)  # type: ignore[union-attr]
            ref = ModelRef(str(info.model_name), str(info.model_version))
            return Answer(out.select("latency_ms"), "adapted", [ref], [], [True] * part.height)
        got = self._served_part(self.served("latency"), part, rows, strict)
        got.outputs = got.outputs.select(OUTPUTS["latency"])
        return got

    def _gemm(self, queries: pl.DataFrame, strict: bool) -> Answer:
        predictor = self.served("gemm")
        native = getattr(predictor, "native", None)
        known = getattr(native, "devices", None)
        every = list(range(queries.height))
        if self.gemm_devices is None or native is None or known is None:
            return self._served_part(predictor, queries, every, strict)
        devices = _devices_of(queries)
        if all(d in known for d in devices):  # the service's hot path: one served call
            return self._served_part(predictor, queries, every, strict)

        def answer(device: str, part: pl.DataFrame, rows: list[int]) -> Answer:
            record = None if device in known else self.gemm_devices(device)  # type: ignore[misc]
            if record is None:  # served, or refused by the served model naming the device
                return self._served_part(predictor, part, rows, strict)
            from hwsurrogate.surrogates.adapt import predict_adapted

            who = f"the adaptation of {device} ({record.n_measurements} measurements)"
            in_domain, warnings = _judge(getattr(record, "domain", None), part, rows, who, strict)
            if str(record.model_version) != str(predictor.version):
                warnings.append(
                    f"{device} was adapted on {record.model_name} v{record.model_version}, "
                    f"serving with v{predictor.version}; re-run `hws adapt --task gemm`"
                )
            outputs = predict_adapted(native, record, part)
            return Answer(outputs, "adapted", [_ref(predictor)], warnings, in_domain)

        return self._per_device(queries, answer)


    def _hlsyn(self, queries: pl.DataFrame, strict: bool) -> Answer:
        """The served HLS-design model; kernels adapted with ``hws adapt --task fpga-hlsyn`` get
        their correction on top (a warning when adapted on another model version)."""
        predictor = self.served("fpga-hlsyn")
        got = self._served_part(predictor, queries, list(range(queries.height)), strict)
        kernels = queries["kernel"].cast(pl.String)
        outputs, kinds = got.outputs, set()
        for kernel in kernels.unique(maintain_order=True).to_list():
            record = self.hlsyn_kernels(kernel) if kernel is not None else None  # type: ignore[misc]
            kinds.add("served" if record is None else "adapted")
            if record is None:
                continue
            from hwsurrogate.surrogates.adapt import predict_hlsyn_adapted

            rows = (kernels == kernel).fill_null(False)
            fixed = predict_hlsyn_adapted(
                outputs.filter(rows), record, queries.filter(rows)["pragmas"].cast(pl.String).to_list()
            )
            idx = rows.arg_true()
            outputs = outputs.with_columns(
                outputs[c].scatter(idx, fixed[c]) for c in ("cycles", "lut", "ff", "dsp", "bram")
            )
            if str(record.model_version) != str(predictor.version):
                got.warnings.append(
                    f"kernel {kernel} was adapted on {record.model_name} v{record.model_version}, serving with "
                    f"v{predictor.version}; re-run `hws adapt --task fpga-hlsyn`"
                )
        kind = _kind(kinds) if kinds else "served"
        return Answer(outputs, kind, got.models, got.warnings, got.in_domain)


def local_dispatch(
    store_root: str | os.PathLike[str] | None = None, versions: dict[str, str | None] | None = None
) -> Dispatch:
    """The dispatch of a command-line process: registry champions (or pinned versions), the store's adapted devices."""
    from hwsurrogate.surrogates.registry.adapted import load_adapted, load_adapted_kernel

    return Dispatch(
        RegistryModels(versions, store_root),
        latency_devices=StoredLatencyDevices(store_root),
        gemm_devices=lambda device: load_adapted(device, store_root),
        hlsyn_kernels=lambda kernel: load_adapted_kernel(kernel, store_root),
    )
