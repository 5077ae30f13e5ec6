"""A rebalancing bot on one exchange account: `rebal run CONFIG --exchange NAME`.

`Bot` (runner.py) drives the Engine against a venue (`rebal.adapters.ccxt`)
and keeps its state in a `Store`; `credentials.py` reads API keys without
ever printing them; `status.py` renders what the bot holds against its
targets.
"""

from rebal.bot.runner import Bot, StepReport

__all__ = ["Bot", "StepReport"]
