"""Adapters between the Engine and the venues that execute its orders.

`rebal.adapters.ccxt` drives a real exchange through ccxt (an optional
extra, imported only there); `rebal.adapters.paper` keeps a simulated
account on real market data, behind the same ccxt calls.
"""
