"""The eval room (docs/design.md §1.1)."""
