"""Policies around the rebalancing core, vectorized over many portfolios: auto-invest schedules and the rest (one module each)."""
