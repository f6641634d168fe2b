"""teravox: chunked reconstruction of synchrotron parallel-beam X-ray tomography scans."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("teravox")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
