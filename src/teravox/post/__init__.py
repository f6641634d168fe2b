"""Post-processing of reconstructed slices ``(slices, n, n)``.

- :mod:`teravox.post.rings`: ring-artefact removal (``rings``, ``ring_snr``, ``ring_size``)
- :mod:`teravox.post.mask`: circular mask (``circ_mask``, ``circ_mask_ratio``, ``circ_mask_value``)
- :mod:`teravox.post.dtype`: output data type and value range (``dtype``, ``dtype_range``,
  ``dtype_percentiles``)
- :mod:`teravox.post.pyramid`: multiscale pyramid for viewers (``pyramid``)
"""
