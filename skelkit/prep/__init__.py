"""The prep room (DESIGN.md §1)."""
