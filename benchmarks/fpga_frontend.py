"""``hws bench fpga-hls4ml-frontend``: wa-hls4ml records rebuilt as PyTorch models, through hls4ml.

Each wa-hls4ml record (the 8 exemplar models and the test records) is rebuilt as a PyTorch
module from its ``model_config`` (layer sizes, kernel sizes, strides, padding, activations, the
residual ``Add`` of Bipc) with an hls4ml configuration from its ``hls_config`` (model precision,
strategy, requested reuse factor; per layer the reuse factor hls4ml settled on and the weight
precision). :func:`hwsurrogate.surrogates.features.hls4ml_frontend.pytorch_design` converts it
with hls4ml 1.3 to a ``ModelGraph`` and reads the layer list. Two checks:

- consistency: the features (and so the predictions) of the hls4ml layer list equal those of
  the record's own layer list, per record; where they differ the bench says which feature;
- accuracy: SMAPE of the predictions from the hls4ml path against the synthesized numbers of the
  8 exemplar records, beside wa-hls4ml's Table 5 (GNN, the same exemplar families, ~120 designs
  each). The model is trained on the dense sweep and the 29 non-exemplar wa-hls4ml records
  (HLS estimates); exemplar records have HLS latency but only post-synthesis resources, so
  resources are scored against Vivado logic synthesis (BRAM in BRAM18K units) and cycles / II
  against the HLS report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import polars as pl

from hwsurrogate.benchmarks.report import BenchReport, json_option, log_bench
from hwsurrogate.errors import SourceNotFoundError
from hwsurrogate.progress import track

__all__ = ["bench_hls4ml_frontend", "record_module"]

_ACT = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}


def _shape(raw: object) -> list[int]:
    if isinstance(raw, list) and raw and all(isinstance(x, list) for x in raw):
        raw = raw[0]
    return [int(v) for v in raw if v is not None] if isinstance(raw, list) else []


def _same_pad(n_in: int, n_out: int, k: int, s: int) -> tuple[int, int]:
    total = max((n_out - 1) * s + k - n_in, 0)
    return total // 2, total - total // 2


def record_module(rec: dict[str, Any]) -> tuple[Any, tuple[int, ...], dict[str, Any]]:
    """A PyTorch module, input shape (channels first) and hls4ml config rebuilding one record.

    Layer ``i`` of ``model_config`` is the sub-module ``l{i}`` (hls4ml names it so), a residual
    ``Add`` sums the previous output and the latest earlier output of the same shape.
    """
    import torch
    from torch import nn

    cfg = rec["model_config"]
    first = _shape(cfg[0].get("input_shape"))
    ops: list[tuple[str, Any, tuple[int, ...]]] = []
    shapes: list[list[int]] = [first]  # channels-last output shape of every step (index 0: the input)
    layer_cfg: dict[str, Any] = {}
    hls_model = rec["hls_config"]["Model"]
    names = rec["hls_config"].get("LayerName") or {}
    wkeys = [k for k, v in names.items() if isinstance(v, dict) and isinstance(v.get("Precision"), dict)
             and "weight" in v["Precision"] and not k.endswith(("_linear", "_alpha"))]  # fmt: skip
    compute = [i for i, layer in enumerate(cfg) if any(t in layer["class_name"] for t in ("Dense", "Conv"))]
    wprec = dict(zip(compute, wkeys, strict=False)) if len(compute) == len(wkeys) else {}
    for i, layer in enumerate(cfg):
        cls = layer["class_name"]
        d_in, d_out = _shape(layer.get("input_shape")), _shape(layer.get("output_shape"))
        name = f"l{i}"
        mod: Any
        if cls == "InputLayer":
            continue
        if "Dense" in cls:
            mod = nn.Linear(d_in[-1], int(layer["neurons"]), bias=bool(layer.get("use_bias", True)))
        elif "Conv" in cls:
            two = "2D" in cls
            k = [int(x) for x in layer["kernel_size"]]
            s = [int(x) for x in layer.get("strides") or [1] * len(k)]
            conv = (nn.Conv2d if two else nn.Conv1d)(d_in[-1], int(layer["filters"]), tuple(k), stride=tuple(s),
                                                     bias=bool(layer.get("use_bias", True)))  # fmt: skip
            if layer.get("padding") == "same":
                pads = [_same_pad(d_in[j], d_out[j], k[j], s[j]) for j in range(len(k))]
                flat = [p for pair in reversed(pads) for p in pair]  # torch pads the last dim first
                pad = (nn.ConstantPad2d if two else nn.ConstantPad1d)(tuple(flat), 0.0)
                ops.append((f"l{i}p", pad, ()))
                shapes.append(shapes[-1])
            mod = conv
        elif cls in ("Activation", "QActivation"):
            act = str(layer.get("activation", "linear")).removeprefix("quantized_").split("(")[0]
            if act not in _ACT:
                raise ValueError(f"record layer {i}: activation {act!r} has no PyTorch rebuild here")
            mod = nn.Softmax(dim=-1) if act == "softmax" else getattr(nn, _ACT[act])()
        elif "Pooling" in cls:
            two = "2D" in cls
            size = layer.get("pool_size") or [d_in[j] // d_out[j] for j in range(2 if two else 1)]
            size = tuple(int(x) for x in (size if isinstance(size, list) else [size]))
            kind = "Max" if cls.startswith("Max") else "Avg"
            mod = getattr(nn, f"{kind}Pool{'2' if two else '1'}d")(size)
        elif cls == "Flatten":
            mod = nn.Flatten()
        elif cls == "Dropout":
            mod = nn.Dropout(float(layer.get("dropout_rate", 0.1)))
        elif cls == "Add":
            prev = len(shapes) - 1
            skip = next(j for j in range(prev - 1, -1, -1) if shapes[j] == d_out)
            ops.append((name, "add", (skip, prev)))
            shapes.append(d_out)
            continue
        else:
            raise ValueError(f"record layer {i}: {cls} has no PyTorch rebuild here")
        ops.append((name, mod, ()))
        shapes.append(d_out)
        lc: dict[str, Any] = {}
        if layer.get("reuse_factor") is not None:
            lc["ReuseFactor"] = int(layer["reuse_factor"])
        if i in compute:
            key = layer.get("name") if layer.get("name") in wkeys else wprec.get(i)
            if key is not None:
                lc["Precision"] = {"weight": names[key]["Precision"]["weight"]}
        if lc and i in compute:
            layer_cfg[name] = lc

    class Rebuilt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.plan: list[tuple[str, tuple[int, ...]]] = []
            for nm, m, src in ops:
                if isinstance(m, nn.Module):
                    self.add_module(nm, m)
                self.plan.append((nm if isinstance(m, nn.Module) else "add", src))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            outs = [x]
            for nm, src in self.plan:
                outs.append(outs[src[0]] + outs[src[1]] if nm == "add" else getattr(self, nm)(outs[-1]))
            return outs[-1]

    # channels first for PyTorch: (C, L) / (C, H, W)
    in_shape = tuple(first[-1:] + first[:-1]) if len(first) > 1 else tuple(first)
    precision = hls_model.get("Precision")
    if isinstance(precision, dict):
        precision = precision.get("default")
    has_conv = any("Conv" in layer["class_name"] for layer in cfg)
    config = {
        "IOType": rec["hls_config"].get("io_type") or ("io_stream" if has_conv else "io_parallel"),
        "Part": rec["target_part"],
        "HLSConfig": {
            "Model": {
                "Precision": precision,
                "ReuseFactor": int(hls_model["ReuseFactor"]),
                "Strategy": str(hls_model["Strategy"]),
            },  # fmt: skip
            "LayerName": layer_cfg,
        },
    }
    return Rebuilt(), in_shape, config


def _records(root: Path) -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for path in sorted((root / "raw").rglob("*.json")):
        for i, rec in enumerate(json.loads(path.read_text())):
            out.append((path.name, i, rec))
    return out


def _smape(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(2 * np.abs(p - y) / np.maximum(np.abs(y) + np.abs(p), 1e-12)) * 100)


@click.command("fpga-hls4ml-frontend")
@json_option("fpga-hls4ml-frontend")
@click.option("--max-iter", default=300, show_default=True, help="Boosting iterations per target.")
def bench_hls4ml_frontend(json_path: str | None, max_iter: int) -> None:
    """wa-hls4ml records rebuilt as PyTorch models through hls4ml 1.3: layer-list consistency and
    SMAPE on the 8 exemplar models beside wa-hls4ml Table 5 (see the module docstring)."""
    from hwsurrogate.datasets.importers import default_path, wa_hls4ml, wa_hls4ml_dense
    from hwsurrogate.surrogates.features.hls4ml import HLS4ML_FEATURES, hls4ml_features
    from hwsurrogate.surrogates.features.hls4ml_frontend import Hls4mlConfigError, pytorch_design
    from hwsurrogate.surrogates.models.fpga import HLS4ML_TARGETS, FpgaRegressor

    t0, cpu0 = time.time(), time.process_time()
    root, dense_root = default_path("wa-hls4ml"), default_path("wa-hls4ml-dense")
    if not root.is_dir() or not dense_root.is_dir():
        raise SourceNotFoundError(f"needs {root} and {dense_root} (set HWSURROGATE_DATA_DIR)")
    report = BenchReport(
        "fpga-hls4ml-frontend", "wa-hls4ml records rebuilt in PyTorch -> hls4ml 1.3 -> surrogate"
    )
    rows: list[dict[str, Any]] = []
    refused: list[str] = []
    for fname, i, rec in track(_records(root), "records through hls4ml"):
        did = str(rec["meta_data"].get("uuid") or rec["meta_data"].get("model_id"))
        try:
            module, shape, config = record_module(rec)
            design = pytorch_design(module, shape, config)
        except (Hls4mlConfigError, ValueError) as exc:
            refused.append(f"{fname}#{i}: {str(exc)[:300]}")
            continue
        rows.append({"design_id": did, "file": fname, **design.query()})
    fpga = wa_hls4ml.load(root)["fpga"]
    hls_rows = fpga.filter(pl.col("stage") == "hls_estimate")
    ours = pl.DataFrame(rows)
    theirs = hls_rows.join(ours.select("design_id"), on="design_id").sort("design_id")
    ours = ours.filter(pl.col("design_id").is_in(theirs["design_id"].implode())).sort("design_id")
    cols = ["model", "reuse_factor", "precision", "strategy", "io_type", "part"]
    f_ours = hls4ml_features(ours.select(cols)).to_numpy()
    f_theirs = hls4ml_features(theirs.select(cols)).to_numpy()
    same = np.isclose(f_ours, f_theirs, rtol=1e-9, equal_nan=True)
    diff_feats: dict[str, int] = {}
    for j, name in enumerate(HLS4ML_FEATURES):
        if (~same[:, j]).any():
            diff_feats[name] = int((~same[:, j]).sum())
    equal = same.all(axis=1)
    per_file: dict[str, list[int]] = {}
    for fname, ok in zip(ours["file"].to_list(), equal.tolist(), strict=True):
        per_file.setdefault(fname, [0, 0])[0 if ok else 1] += 1

    # model: dense sweep + non-exemplar wa records (HLS estimates), as `hws bench fpga-hls4ml`
    dense = wa_hls4ml_dense.load(dense_root)["fpga"].filter(pl.col("stage") == "hls_estimate")
    train = pl.concat(
        [
            dense,
            hls_rows.filter(~pl.col("extra").str.contains('"family":"models"') & pl.col("lut").is_not_null()),
        ],
        how="diagonal_relaxed",
    )
    train = train.filter(pl.col("lut").is_not_null())
    reg = FpgaRegressor(kind="hls4ml", max_iter=max_iter).fit(train, train.select(HLS4ML_TARGETS))
    p_ours, p_theirs = reg.predict(ours.select(cols)), reg.predict(theirs.select(cols))
    pred_equal = np.all(np.isclose(p_ours, p_theirs, rtol=1e-9, equal_nan=True), axis=1)
    # records whose own layer list follows the Keras convention hls4ml's graph has: an InputLayer
    # and no Dropout (the 2layer/3layer records list no InputLayer; 2_20 lists Dropout, which hls4ml drops)
    classes = [[x["class_name"] for x in json.loads(m)] for m in theirs["model"].to_list()]
    alike = np.array([c[0] == "InputLayer" and "Dropout" not in c for c in classes])
    exemplar = (ours["file"] == "exemplar_models.json").to_numpy()
    for label, mask, target in (
        ("8 exemplar models", exemplar, True),
        ("test records listing an InputLayer and no Dropout", alike & ~exemplar, True),
        (
            "test records without InputLayer or with Dropout (layer-list convention differs)",
            ~alike & ~exemplar,
            False,
        ),
    ):
        n = int(mask.sum())
        report.add("records whose hls4ml layer list gives the record's features", label, float(equal[mask].sum()),
                   n=n, direction=">=", target=float(n) if target else None)  # fmt: skip
        report.add("records whose hls4ml path gives the record's predictions", label, float(pred_equal[mask].sum()),
                   n=n, direction=">=", target=float(n) if target else None)  # fmt: skip

    # SMAPE on the exemplar models, beside Table 5
    ex = ours.filter(pl.col("file") == "exemplar_models.json")
    post = fpga.filter(pl.col("stage") == "post_synth").join(ex.select("design_id"), on="design_id")
    hls_ex = hls_rows.join(ex.select("design_id"), on="design_id")
    ex = ex.join(post.select("design_id", "lut", "ff", "dsp", "bram"), on="design_id").join(
        hls_ex.select("design_id", "cycles", "ii"), on="design_id", how="left"
    )
    pred = reg.predict(ex.select(cols))
    table = pl.read_csv(root / "reference_metrics" / "paper_tables_4_5.csv").filter(
        (pl.col("paper_table") == 5) & (pl.col("model") == "GNN")
    )
    anchor_map = {
        "lut": "lut",
        "ff": "ff",
        "dsp": "dsp",
        "bram": "bram",
        "cycles": "cycles_max",
        "ii": "interval_max",
    }
    smapes: dict[str, float] = {}
    for j, t in enumerate(HLS4ML_TARGETS):
        y = ex[t].cast(pl.Float64).to_numpy() * (2.0 if t == "bram" else 1.0)  # bram36k -> bram18k
        ok = np.isfinite(y) & np.isfinite(pred[:, j])
        if ok.sum() == 0:
            continue
        s = _smape(y[ok], np.clip(pred[ok, j], 0, None))
        smapes[t] = s
        anchor = table.filter(pl.col("target") == anchor_map[t])["smape_pct"]
        n_paper = int(table.filter(pl.col("target") == anchor_map[t])["n_samples"].sum())
        stage = "post-synth" if t in ("lut", "ff", "dsp", "bram") else "HLS report"
        report.add(f"SMAPE % {t}", f"8 exemplar models via PyTorch -> hls4ml ({stage} truth)", s,
                   anchor=float(anchor.mean()) if anchor.len() else None,
                   anchor_source=f"wa-hls4ml Table 5, GNN, mean over its 7 exemplar families (n={n_paper})",
                   n=int(ok.sum()), note="8 designs only: one or two per family")  # fmt: skip
    report.data = {
        "records": len(rows) + len(refused),
        "converted": len(rows),
        "refused": refused,
        "compared": int(equal.size),
        "consistent_per_file": {k: {"equal": v[0], "different": v[1]} for k, v in sorted(per_file.items())},
        "features_that_differ": diff_feats,
        "train_rows": train.height,
        "exemplar_smape": smapes,
        "wall_s": round(time.time() - t0, 1),
        "cpu_s": round(time.process_time() - cpu0, 1),
    }
    log_bench(report)
    report.emit(json_path)
