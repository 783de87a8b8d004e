"""Scale out on Dask: read, featurise, train on and score logs larger than one machine.

The single-process path (``training.train``) stays the reference: every step here is
built so that its results equal that path's (features bit for bit) or are said to
differ and why (models trained by ``lightgbm.dask``). Nothing in ``features``,
``models`` or ``training`` imports this package; only the CLI does.
"""
