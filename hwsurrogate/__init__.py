"""hwsurrogate: latency, power and FPGA-resource surrogates for ML workloads on hardware.

Sub-packages (imports point one way: service -> surrogates -> datasets):

- :mod:`hwsurrogate.datasets`: schemas, the parquet dataset store, importers of public data
  and collectors that measure on this machine.
- :mod:`hwsurrogate.surrogates`: the feature pipeline, tree / GNN / few-shot models, MLflow.
- :mod:`hwsurrogate.service`: the HTTP service.
"""

__version__ = "0.1.0"
