"""The train room (DESIGN.md §1)."""
