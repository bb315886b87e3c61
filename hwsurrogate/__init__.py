"""hwsurrogate: latency, power and FPGA-resource surrogates for ML workloads on hardware.

Sub-packages (imports point one way: cli -> service / benchmarks -> surrogates -> datasets):

- :mod:`hwsurrogate.datasets`: schemas, the parquet dataset store, importers of public data
  and collectors that measure on this machine.
- :mod:`hwsurrogate.surrogates`: the feature pipeline, tree / GNN / few-shot models, MLflow.
- :mod:`hwsurrogate.service`: the HTTP service.
- :mod:`hwsurrogate.benchmarks`: the ``hws bench`` benchmarks and their report format.
- :mod:`hwsurrogate.cli`: the ``hws`` command line.

Shared by all of them: :mod:`.errors`, :mod:`.settings`, :mod:`.progress`, :mod:`.io` (atomic
writes, safe file names) and :mod:`.client` (the HTTP client). Importing this package loads
nothing else.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
