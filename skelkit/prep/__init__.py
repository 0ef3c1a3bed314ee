"""The prep room (docs/design.md §1.1)."""
