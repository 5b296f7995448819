"""Placeholder: the `perturbed` network (exact field plus a controlled error) is being written."""
