"""The per-sample maths of the build: numba parsers, body selection, normalisation, modalities."""
