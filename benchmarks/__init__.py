"""Benchmark scripts (not tests): `make bench` runs them all; see README.md here."""
