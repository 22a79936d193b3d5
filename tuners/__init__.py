"""Journaled, verifiable, reversible changes to a node's knobs."""
