"""Importer: HARP v21: Vitis 2021.1 HLS results for 24 HLSyn kernels.

Read the source README under ``$HWSURROGATE_DATA_DIR/fpga/harp_v21`` for units, encodings and defects.

Row design (see ``docs/fpga-data.md``): the same as HLSyn (:func:`.hlsyn.designs_frame`): one
``stage=hls_estimate`` row per lv2 record (3,530), ``design_id = v21/<kernel>/<design_key>``,
``domain=harp``, zero targets = missing. ``ret_code`` (PASS/TIMEOUT/UNAVAILABLE/DUPLICATED/
ANALYZE_ERROR) and ``suite`` go to ``extra``. The kernels' C sources are byte-identical to
HLSyn's, so ``model`` points at the ``hlsyn`` program graphs (import ``hlsyn`` for them).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from hwsurrogate.datasets.importers import Source
from hwsurrogate.datasets.importers._common import read_csv_checked, with_provenance
from hwsurrogate.datasets.importers.hlsyn import DESIGN_COLUMNS, designs_frame
from hwsurrogate.datasets.schemas import Kind, with_measurement_id
from hwsurrogate.errors import SourceFormatError, SourceNotFoundError

SOURCE = Source(
    name="harp",
    kinds=("fpga",),
    subpath="fpga/harp_v21",
    url="https://github.com/UCLA-VAST/HARP/tree/c8bffd9411917b125846429b4d6be4f21c7a7165/dse_database",
    license="BSD-3-Clause",
    description="HARP v21: Vitis 2021.1 HLS results for 24 HLSyn kernels",
)

ORIGIN = "github.com/UCLA-VAST/HARP@c8bffd9411917b125846429b4d6be4f21c7a7165"
DOMAIN = "harp"
TOOLS = {"v21": ("vitis_hls", "2021.1")}
RET_CODES = frozenset({"PASS", "TIMEOUT", "UNAVAILABLE", "DUPLICATED", "ANALYZE_ERROR"})


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Design rows from ``derived/harp_v21_designs.csv.xz`` (or the given CSV file)."""
    csv = path if path.is_file() else path / "derived" / "harp_v21_designs.csv.xz"
    if not csv.is_file():
        raise SourceNotFoundError(f"HARP file {csv} is missing; download it from {SOURCE.url}")
    raw = read_csv_checked(
        csv,
        (*DESIGN_COLUMNS, "suite", "ret_code"),
        schema_overrides={"pragma_point": pl.String, "valid": pl.String},
    )
    unknown = sorted(set(raw["ret_code"].drop_nulls().unique().to_list()) - RET_CODES)
    if unknown or raw["ret_code"].null_count():
        raise SourceFormatError(
            f"{csv}: column 'ret_code' has unknown or empty value(s) {unknown}; expected {sorted(RET_CODES)}"
        )
    designs = designs_frame(raw, path=csv, domain=DOMAIN, tools=TOOLS, extra_columns=("suite", "ret_code"))
    frame = with_provenance(designs, source=SOURCE.name, origin=ORIGIN, license=SOURCE.license)
    return {"fpga": with_measurement_id(frame, "fpga")}
