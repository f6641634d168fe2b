"""File I/O: scan readers, chunk-file writers, virtual datasets, atomic writes, provenance."""

from teravox.io.scan import Scan, Value, open_scan

__all__ = ["Scan", "Value", "open_scan", "open_scan_for"]


def open_scan_for(path, params) -> Scan:  # noqa: ANN001 - Params imported lazily to avoid a cycle
    """Open ``path`` with the input parameters of ``params`` (flat/dark files, theta source)."""
    return open_scan(path, data_path=params.data_path, flat_file=params.flat_file,
                     flat_path=params.flat_path, dark_file=params.dark_file,
                     dark_path=params.dark_path, theta_source=params.theta_source,
                     theta_start_deg=params.theta_start_deg, theta_end_deg=params.theta_end_deg)
