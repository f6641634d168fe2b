"""Reconstruction: sinogram operations, rotation centre, backends.

- :mod:`teravox.recon.sinogram`: −log, 360°→180° conversion of half-acquisition scans,
  padding (``minus_log``, ``half_acquisition``, ``pad``, ``pad_width_px``)
- :mod:`teravox.recon.center`: automatic rotation centre and axis tilt (``center``,
  ``center_search_px``, ``center_min_confidence``, ``tilt_deg``)
- :mod:`teravox.recon.backends`: the reconstruction backends
"""
