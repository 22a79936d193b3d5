"""Journaled transactions over knobs: record format, folding, durable files, the node lock,
apply, rollback and inspection (verify, status, the agent's cached read)."""
