"""The train room (docs/design.md §1.1)."""
