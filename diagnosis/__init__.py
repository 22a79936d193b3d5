"""Diagnosis, pure: a Window of samples and the node's Topology in, a Report out.

It never samples the node and imports nothing above the probes, so a replayed snapshot gives the
same report anywhere (`nodetune diagnose --replay`, the tests, the agent).
"""
