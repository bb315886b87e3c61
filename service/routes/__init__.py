"""One router per resource; :func:`hwsurrogate.service.app.create_app` includes them all."""

__all__ = ["datasets", "devices", "fpga", "gemm", "health", "latency", "model"]
