"""The synthetic generator (docs/design.md §8): small datasets in the genuine raw formats."""
