"""Ceiling B: a bare Django view committing one row to the same database (benchmark only, never deployed)."""
