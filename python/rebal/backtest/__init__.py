"""Backtests: the Engine driven by historical ticks against a simulated venue."""
