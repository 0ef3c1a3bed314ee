"""`skelprep build`: batches of raw files prepared on dask, written in order, resumable.

``batch`` is the worker side (a batch of file tasks -> arrays ready to append), ``runners``
are where batches run (this process, local processes, a dask.distributed cluster), and
``pipeline`` drives them: discovery, the store writer, progress and the build report.
"""
