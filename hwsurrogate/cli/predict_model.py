"""``hws predict model``: whole-model latency of your own model (ONNX, ``FILE.py:CALLABLE``, config.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from hwsurrogate.cli.options import json_option, out_option, store_option, write_frame

__all__ = ["parse_input_shapes", "predict_model_cmd"]


def parse_input_shapes(text: str | None) -> list[list[int]] | None:
    """``'1,3,224,224'`` -> [[1, 3, 224, 224]]; several inputs separated by ``;`` (click error otherwise)."""
    if text is None or not text.strip():
        return None
    shapes = []
    for part in text.split(";"):
        try:
            dims = [int(x) for x in part.replace(" ", ",").split(",") if x.strip()]
        except ValueError:
            raise click.BadParameter(f"expected integers like 1,3,224,224 (';' between inputs), got {text!r}",
                                     param_hint="--input-shape") from None  # fmt: skip
        if not dims or any(d < 1 for d in dims):
            raise click.BadParameter(
                f"dimensions must be integers >= 1, got {part!r}", param_hint="--input-shape"
            )
        shapes.append(dims)
    return shapes


@click.command("model")
@click.option("--model", "model_source", required=True,
              help="FILE.onnx, FILE.py:CALLABLE (returns an nn.Module), package.module:CALLABLE, or a "
                   "HuggingFace-style config.json (BERT / GPT-2 / OPT-like).")  # fmt: skip
@click.option("--input-shape", default=None,
              help="Whole input shape, batch first, e.g. 1,3,224,224 (';' between several inputs). "
                   "A config.json takes --batch/--seqlen instead.")  # fmt: skip
@click.option(
    "--batch", type=click.IntRange(min=1), default=None, help="Batch size (replaces the first dim)."
)
@click.option(
    "--seqlen", type=click.IntRange(min=1), default=None, help="Sequence length (config.json models)."
)
@click.option("--device", "device_id", required=True,
              help="Device id of the devices table, e.g. neusight/NVIDIA_H100 or local/<host>-cpu-t1 (hws collect ops).")  # fmt: skip
@click.option("--mode", type=click.Choice(["inference", "training"]), default="inference", show_default=True,
              help="training adds the backward of every op (forward + backward latency).")  # fmt: skip
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="Also list the N most expensive operators (0: none).")  # fmt: skip
@store_option
@json_option
@out_option("Write the per-operator table (shapes, FLOPs, predicted ms) to FILE (.csv, .json or .parquet).")
def predict_model_cmd(
    model_source: str, input_shape: str | None, batch: int | None, seqlen: int | None, device_id: str, mode: str,
    top: int, store_path: Path | str | None, as_json: bool, out: Path | None,
) -> None:  # fmt: skip
    """Whole-model latency of your own model on a device, from the operator surrogates.

    \b
    hws predict model --model resnet.onnx --input-shape 1,3,224,224 --device neusight/NVIDIA_H100
    hws predict model --model mynet.py:build --input-shape 8,3,64,64 --device local/myhost-cpu-t1
    hws predict model --model config.json --batch 4 --seqlen 512 --device neusight/L4 --mode training

    The model is turned into its operator table without running it (torch.fx on meta
    tensors, ONNX shape inference; no weights, no GPU); every operator is predicted by the
    registered operator model (`hws train ops`) for the device and summed (layers, and
    backward with --mode training). Operators it cannot model are estimated from the others
    and reported with their share of the time, never dropped.
    """
    import polars as pl

    from hwsurrogate.datasets.store import DatasetStore
    from hwsurrogate.surrogates.wholemodel import predict_model

    shapes = parse_input_shapes(input_shape)
    store = DatasetStore(store_path)
    answer = predict_model(model_source, shapes, device_id, mode, batch=batch, seqlen=seqlen, store=store)
    if out is not None:
        per_op = answer.per_op
        write_frame(per_op, out)
    if as_json:
        payload: dict[str, Any] = {"model": model_source, "device_id": device_id, **answer.to_dict()}
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    click.echo(f"{model_source} on {device_id} ({mode}): {answer.latency_ms:.4g} ms "
               f"({answer.per_op.height} operators)")  # fmt: skip
    kinds = pl.DataFrame(
        [
            {
                "op_kind": k,
                "ms": v["ms"],
                "share_%": 100 * v["share"],
                "calls": int(v["ops"]),
                "unmodeled_ms": v["unmodeled_ms"],
            }
            for k, v in answer.breakdown.items()
        ]  # fmt: skip
    )
    with pl.Config(
        tbl_rows=-1, tbl_hide_dataframe_shape=True, float_precision=4, tbl_hide_column_data_types=True
    ):
        click.echo(kinds)
        if top:
            worst = answer.per_op.sort("total_ms", descending=True).head(top)
            click.echo(worst.select("name", "op_kind", "op", "phase", "count", "total_ms", "modeled"))
    if answer.unmodeled_ops:
        click.echo(f"unmodeled ({100 * answer.unmodeled_share:.2f}% of the time, estimated from the modeled ops): "
                   f"{', '.join(answer.unmodeled_ops)}")  # fmt: skip
    if out is not None:
        click.echo(f"wrote {answer.per_op.height} operators to {out}")
