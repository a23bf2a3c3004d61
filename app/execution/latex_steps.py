"""placeholder"""
from __future__ import annotations
def find_latex_computations(text, limits=None, deadline=None):
    return []
