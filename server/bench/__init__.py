"""Benchmarks that print figures beside a baseline: serving, unlearning (with membership inference), plots."""
