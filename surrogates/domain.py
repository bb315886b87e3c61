"""Training domains: what a fitted model has seen, recorded at fit time, checked at prediction time.

A domain is a JSON-able dict stored on the fitted model (``training_domain_``) or on an adapted
device's record::

    {"by": "device_id",                       # optional: the column that picks a region
     "regions": {"neusight/A100": {           # "*" when there is no "by" column
         "op": {"values": ["bmm", "linear"]},  # categorical field: the values seen
         "m": {"min": 16, "max": 8192},        # numeric field: the range seen
     }}}

:func:`record_domain` describes training rows (called by the models' ``fit``);
:func:`domain_issues` says, per query row, which fields lie outside (called only by the
dispatch, :mod:`hwsurrogate.surrogates.predict`, which turns them into ``in_domain`` flags,
warnings, or a refusal under ``strict``). A model without a recorded domain (pickled before
domains existed) has domain None: "unknown", never checked.

Derived fields: ``precision_bits`` is the total width of the ``precision`` column, parsed with
the project's one precision grammar (:func:`hwsurrogate.datasets.precision.parse_precision`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

__all__ = ["DOMAIN_FIELDS", "domain_issues", "domain_parts", "record_domain"]

#: Fields of each task's domain: (categorical fields, numeric fields, the column picking a region).
DOMAIN_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str | None]] = {
    "gemm": (("op", "dtype"), ("m", "n", "k", "batch"), "device_id"),
    "fpga-hls4ml": (("part", "strategy", "io_type"), ("precision_bits", "reuse_factor"), None),
    "fpga-hlsyn": (("kernel", "tool"), (), None),
}


def _precision_bits(precision: pl.Series) -> pl.Series:
    from hwsurrogate.datasets.precision import parse_precision

    def width(text: str | None) -> float | None:
        fp = parse_precision(text)
        return float(fp.width) if fp is not None else None

    values = precision.cast(pl.String)
    uniq = {v: width(v) for v in values.unique().to_list()}  # a handful of distinct strings
    return values.replace_strict(uniq, default=None, return_dtype=pl.Float64).alias("precision_bits")


def _with_derived(frame: pl.DataFrame, fields: Sequence[str]) -> pl.DataFrame:
    if "precision_bits" in fields and "precision_bits" not in frame.columns and "precision" in frame.columns:
        frame = frame.with_columns(_precision_bits(frame["precision"]))
    return frame


def _describe(frame: pl.DataFrame, categorical: Sequence[str], numeric: Sequence[str]) -> dict[str, Any]:
    region: dict[str, Any] = {}
    for col in categorical:
        if col in frame.columns:
            region[col] = {"values": sorted(str(v) for v in frame[col].drop_nulls().unique().to_list())}
    for col in numeric:
        if col in frame.columns:
            s = frame[col].cast(pl.Float64, strict=False).drop_nulls().drop_nans()
            if s.len():
                region[col] = {"min": float(s.min()), "max": float(s.max())}  # type: ignore[arg-type]
    return region


def record_domain(task: str, frame: pl.DataFrame) -> dict[str, Any]:
    """The training domain of ``task``'s model fitted on ``frame`` (its training rows)."""
    categorical, numeric, by = DOMAIN_FIELDS[task]
    frame = _with_derived(frame, numeric)
    if by is None or by not in frame.columns:
        return {"task": task, "regions": {"*": _describe(frame, categorical, numeric)}}
    regions = {
        str(key): _describe(part, categorical, numeric)
        for (key,), part in frame.group_by([by], maintain_order=True)
        if key is not None
    }
    return {"task": task, "by": by, "regions": dict(sorted(regions.items()))}


def domain_parts(domain: dict[str, Any] | None) -> list[str]:
    """The FPGA parts of a domain (all regions), sorted; [] when unknown."""
    if not domain:
        return []
    return sorted(
        {p for r in domain.get("regions", {}).values() for p in r.get("part", {}).get("values", [])}
    )


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


#: built check expressions per region (keyed by its repr: a region edited in place is rebuilt)
_CHECKS: dict[str, list[tuple[str, pl.Expr]]] = {}


def _region_checks(region: dict[str, Any]) -> list[tuple[str, pl.Expr]]:
    """Per field of ``region``, the expression flagging rows outside it (null: not checked).

    Built once per region: a served model's domain lives as long as the model, and building
    the expressions cost more than evaluating them on a one-query request."""
    key = repr(region)
    cached = _CHECKS.get(key)
    if cached is not None:
        return cached
    checks = []
    for col, spec in region.items():
        if "values" in spec:
            bad = ~pl.col(col).cast(pl.String).is_in(spec["values"])
        else:
            value = pl.col(col).cast(pl.Float64, strict=False)
            bad = (value < spec["min"]) | (value > spec["max"])
        checks.append((col, bad.fill_null(False).alias(col)))
    if len(_CHECKS) > 4096:  # regions of models no longer served: start over
        _CHECKS.clear()
    _CHECKS[key] = checks
    return checks


#: a query frame of up to this many rows is checked value by value in Python (see :func:`domain_issues`)
FEW_DOMAIN_ROWS = 64
#: the Python form of each region's checks (keyed as :data:`_CHECKS`): per field, its column and
#: either the set of values seen or the (min, max) range as floats
_PY_CHECKS: dict[str, list[tuple[str, frozenset[str] | tuple[float, float]]]] = {}


def _region_py_checks(region: dict[str, Any]) -> list[tuple[str, frozenset[str] | tuple[float, float]]]:
    """:func:`_region_checks` for the value-by-value path, built once per region."""
    key = repr(region)
    cached = _PY_CHECKS.get(key)
    if cached is not None:
        return cached
    checks: list[tuple[str, frozenset[str] | tuple[float, float]]] = [
        (col, frozenset(spec["values"]) if "values" in spec else (float(spec["min"]), float(spec["max"])))
        for col, spec in region.items()
    ]
    if len(_PY_CHECKS) > 4096:  # regions of models no longer served: start over
        _PY_CHECKS.clear()
    _PY_CHECKS[key] = checks
    return checks


#: the Python types a column's values may have for the value-by-value path (else polars casts them)
_TEXT_TYPES = frozenset((str, type(None)))
_NUMBER_TYPES = frozenset((int, float, type(None)))  # not bool: a boolean column is cast by polars


def _issue(col: str, spec: dict[str, Any], value: Any) -> str:
    """The reason ``value`` of column ``col`` lies outside its field ``spec``."""
    if "values" in spec:
        seen = ", ".join(spec["values"]) or "none"
        return f"{col}={str(value)!r} (trained on {seen})"
    lo, hi = _fmt(spec["min"]), _fmt(spec["max"])
    return f"{col}={_fmt(float(value))} outside the trained range {lo}..{hi}"


def _few_issues(by: str | None, regions: dict[str, Any], q: pl.DataFrame, issues: list[list[str]]) -> bool:
    """:func:`domain_issues` of a few rows, value by value in Python with polars' rules (a null is
    not checked; NaN lies above every range, as polars orders it); False, with nothing filled in,
    where a column's values are not plain strings/numbers (polars' casts then decide)."""
    names = set(q.columns)
    columns: dict[str, list[Any]] = {}

    def values_of(col: str, types: frozenset[type]) -> bool:
        if col not in columns:
            values = q.get_column(col).to_list()
            if not types.issuperset(map(type, values)):
                return False
            columns[col] = values
        return True

    keyed = by is not None and by in names
    if keyed and not values_of(by, _TEXT_TYPES):  # type: ignore[arg-type]
        return False
    keys = columns[by] if keyed else ["*"] * q.height  # type: ignore[index]
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    found = []
    for key, rows in groups.items():
        region = regions.get(str(key)) if by is not None else regions.get("*")
        checks = []
        if region is not None:
            for col, check in _region_py_checks(region):
                numeric = isinstance(check, tuple)
                if numeric and (check[0] != check[0] or check[1] != check[1]):  # type: ignore[index]
                    return False  # a NaN bound: polars' ordering of NaN decides
                if col in names:
                    if not values_of(col, _NUMBER_TYPES if numeric else _TEXT_TYPES):
                        return False
                    checks.append((col, check))
        found.append((key, rows, region, checks))
    for key, rows, region, checks in found:  # every value read: now the verdicts
        if region is None:
            for i in rows:
                issues[i].append(f"{by}={key!r} is not in the training data")
            continue
        for col, check in checks:  # per row, its reasons in the region's field order
            values = columns[col]
            if isinstance(check, tuple):
                lo, hi = check
                # float() as polars' cast; NaN fails both comparisons: outside, as polars orders it
                bad = [i for i in rows if values[i] is not None and not lo <= float(values[i]) <= hi]
            else:
                bad = [i for i in rows if values[i] is not None and values[i] not in check]
            for i in bad:
                issues[i].append(_issue(col, region[col], values[i]))
    return True


def domain_issues(domain: dict[str, Any], queries: pl.DataFrame) -> list[list[str]]:
    """Per query row, the reasons it lies outside ``domain`` ([] for a row inside it).

    A null query value is not checked (e.g. no ``precision``: the layer list's own bits apply).
    One vectorised pass per region; messages are built only for rows that fail. A frame of up
    to :data:`FEW_DOMAIN_ROWS` rows of plain strings and numbers is checked value by value in
    Python instead, with the same verdicts and messages (a polars query costs ~0.35 ms however
    few the rows on the 2-core machine; this ~35 us for 22 rows).
    """
    by = domain.get("by")
    regions: dict[str, Any] = domain.get("regions", {})
    fields = sorted({f for r in regions.values() for f in r})
    q = _with_derived(queries, fields)
    issues: list[list[str]] = [[] for _ in range(q.height)]
    if q.height <= FEW_DOMAIN_ROWS and _few_issues(by, regions, q, issues):
        return issues
    if by is not None and by in q.columns:
        keys = q[by].cast(pl.String)
        uniq = keys.unique(maintain_order=True).to_list()
        groups = (
            [(uniq[0], None)]
            if len(uniq) == 1
            else [(k, keys.is_null() if k is None else keys == k) for k in uniq]  # a null key: its rows too
        )
    else:
        groups = [("*", None)]
    for key, mask in groups:
        rows = list(range(q.height)) if mask is None else mask.arg_true().to_list()
        region = regions.get(str(key)) if by is not None else regions.get("*")
        if region is None:
            for i in rows:
                issues[i].append(f"{by}={key!r} is not in the training data")
            continue
        part = q if mask is None else q.filter(mask)
        checks = [bad for col, bad in _region_checks(region) if col in part.columns]
        if not checks:
            continue
        flags = part.select(checks)
        if not any(flag.any() for flag in flags.iter_columns()):
            continue  # the common case: every row inside (tested per column: no second query)
        for flag in flags.iter_columns():
            if not flag.any():
                continue
            col, spec = flag.name, region[flag.name]
            values = part[col].to_list()
            for j in (j for j, out in enumerate(flag.to_list()) if out):  # no lazy arg_true per column
                issues[rows[j]].append(_issue(col, spec, values[j]))
    return issues
