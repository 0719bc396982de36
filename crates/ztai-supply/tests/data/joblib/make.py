"""Writes the joblib test files (run with numpy and joblib installed; nothing here is loaded).

    python make.py
"""
import os

import joblib
import numpy as np


class Evil:
    """Pickles as a call of os.system; dumping it never runs the command."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


weights = np.arange(12, dtype=np.float32).reshape(3, 4)
joblib.dump({"w": weights, "b": np.array([1, 2], dtype=">i8"), "name": "model"}, "arrays.joblib")
joblib.dump({"w": weights, "labels": np.array(["cat", "dog"]), "when": np.array(["2026-01-01"], dtype="M8[D]")}, "mixed.joblib")
# The payload sits after an array's inline bytes: a scanner that stops at them misses it.
joblib.dump({"w": weights, "hook": Evil()}, "after_array.joblib")
joblib.dump({"objects": np.array([Evil(), 1], dtype=object)}, "object_array.joblib")
joblib.dump({"objects": np.array(["a", 2], dtype=object)}, "object_array_benign.joblib")
joblib.dump({"w": weights, "hook": Evil()}, "compressed.joblib", compress=3)
