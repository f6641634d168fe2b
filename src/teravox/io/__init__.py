"""File I/O: scan readers, chunk-file writers, virtual datasets, atomic writes, provenance."""

from teravox.io.scan import InputSpec, Scan, Value, open_scan

__all__ = ["InputSpec", "Scan", "Value", "open_scan", "open_scan_for"]


def open_scan_for(path, params, **changes) -> Scan:  # noqa: ANN001, ANN003 - Params imported lazily (a cycle)
    """Open ``path`` with the input parameters of ``params`` (paths, side files, angles), with ``changes``."""
    return open_scan(path, InputSpec.from_params(params, **changes))
