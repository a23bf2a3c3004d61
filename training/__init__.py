"""Specialist training, and the simple stand-in learner used by the active-learning bench."""
