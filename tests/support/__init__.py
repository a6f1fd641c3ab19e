"""Helpers shared by tests in several folders (fixtures stay in conftest.py files)."""
