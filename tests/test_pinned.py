"""heat, pme and custom give bit-identical samples to tests/data/pinned_samples.npz, written by
tests/data/make_pinned.py (issue 13; re-pinned for issue 12's final step and pme's grid end)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

DATA = Path(__file__).with_name("data")


def test_samples_match_the_pinned_numbers_bit_for_bit():
    spec = importlib.util.spec_from_file_location("make_pinned", DATA / "make_pinned.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    pinned = np.load(DATA / "pinned_samples.npz")
    now = maker.samples()
    assert sorted(now) == sorted(pinned.files)
    moved = [key for key in pinned.files if not np.array_equal(now[key], pinned[key])]
    assert not moved, f"samples moved: {moved}"
