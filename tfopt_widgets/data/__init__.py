"""The user's data checked against the model before any work: shapes, dtypes, NaN/Inf, labels in range
(``checks``, which needs TensorFlow for datasets), and the numpy-only pieces that evaluation shares (``finite``,
``nested``). Imports ``model`` (the stack), ``errors`` and numpy.
"""
