"""The eval room (DESIGN.md §1)."""
