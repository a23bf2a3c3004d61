"""Execution: the free verifier.

Pure functions that turn chain-of-thought text into a program (a DAG of
whitelisted sympy operations), execute it safely, extract gold answers and
decide mathematical equivalence.  No I/O, no database: persistence lives in
thin shells elsewhere.
"""
