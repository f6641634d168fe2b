"""Synthetic test data: an analytic phantom with exact projections and a scan writer.

``Phantom``/``Shape``/``default_phantom`` give exact parallel-beam line integrals and
ground-truth slices in the geometry of docs/architecture.md; ``write_scan`` and
``write_multiscan`` stream DXchange (or NXtomo) files with detector and beam effects
and the truth stored under ``/truth``.
"""

from teravox.synth.phantom import Phantom, Shape, default_mu_scale, default_phantom
from teravox.synth.scan import SIZES, flat_profile, write_multiscan, write_scan

__all__ = [
    "SIZES",
    "Phantom",
    "Shape",
    "default_mu_scale",
    "default_phantom",
    "flat_profile",
    "write_multiscan",
    "write_scan",
]
