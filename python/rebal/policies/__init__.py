"""Policies around the rebalancing core, vectorized over the Engine's columns
(numpy; never a Python loop over portfolios on a tick):

- `exits`: take-profit, stop-loss, trailing take-profit, max drawdown;
- `auto_invest`: which auto-invest (DCA) cycles run, and their limits;
- `schedule`: when scheduled cycles run (every N, weekly, monthly; UTC).
"""
