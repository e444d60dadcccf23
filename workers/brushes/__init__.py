"""Layered Diffusion Brushes: region-targeted, layered edits that rerun only the end of a cached
denoising trajectory (Gholami et al., "Streamlining Image Editing with Layered Diffusion Brushes").

``trajectory`` caches z_T..z_0 for a generated base or a DDIM-inverted photo, ``layers`` holds the
layer data and the stacking rule, ``render`` turns layers into a composite, ``project`` and
``project_io`` read and write ``.hearth`` files, ``job`` is the image worker's entry point.
"""
