"""Benchmarks against published results: the ``hws bench`` commands and their one report format.

- :mod:`.report`: :class:`~.report.BenchReport` (the printed table and the ``--json`` file that
  ``make_table.py`` turns into BENCHMARKS.md), ``log_bench`` (MLflow), shared options;
- :mod:`.gemm`: GPPerf, NeuSight, aiconfigurator, feature speed, few-shot GEMM;
- :mod:`.fpga`: HLSyn, PowerGear, wa-hls4ml;
- :mod:`.latency`: per-device NB201 / FBNet latency on HELP's test set;
- :mod:`.fewshot`: few-shot latency on unseen devices (HELP protocol, task suite, live, GNN ablations);
- :mod:`.model_neusight`: whole-model latency of NeuSight's traced transformers on unseen GPUs;
- :mod:`.model_live`: whole models on this CPU, operators collected and fitted here.

The other ``*.py`` files here are scripts run as files (``python benchmarks/collect_gemm.py``):
collection and import timings, service load, variant studies and ``make_table.py``.
"""
