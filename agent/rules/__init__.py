"""Diagnosis rules: one module per verdict."""
