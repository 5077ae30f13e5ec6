"""`rebal run CONFIG --exchange NAME [--paper] [--once]`: the bot from a shell.

Keys come from the environment or `--keys FILE` (see `credentials`), never
from the command line, where other users could read them in the process
list. `--paper` needs no keys: real prices and rules, a simulated account
kept in the state file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from rich.console import Console

from rebal import config as cfg
from rebal.bot.credentials import Credentials, RedactingFilter, load_credentials
from rebal.exceptions import ConfigError, RebalError, VenueAuthError, VenueUnavailable

__all__ = ["add_command", "run_command", "make_exchange"]

log = logging.getLogger("rebal.bot")


def add_command(commands: Any) -> None:
    run = commands.add_parser("run", help="run a rebalancing bot on an exchange account (or --paper)")
    run.add_argument("config", type=Path, help="strategy config (TOML or JSON)")
    run.add_argument("--exchange", required=True, help="a ccxt exchange id, e.g. binance")
    run.add_argument("--paper", action="store_true", help="real market data and rules, simulated fills, no keys")
    run.add_argument("--paper-balance", default=None, help="the paper account's starting balance, e.g. 'USDT=10000' (default: the investment)")
    run.add_argument("--once", action="store_true", help="one step, then exit")
    run.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    run.add_argument("--interval", default="1m", help="time between steps (default 1m)")
    run.add_argument("--state", type=Path, default=None, help="the bot's state file (default: CONFIG with .state.sqlite)")
    run.add_argument("--keys", type=Path, default=None, help="API keys file (TOML/JSON, mode 600)")
    run.add_argument("--slippage-bps", type=float, default=25.0, help="buys are limit orders capped this far above the last price, in basis points (default 25); the planner keeps that much of each buy in reserve")
    run.add_argument("--stop", choices=("sell", "return"), default=None, help="terminate the portfolio: sell everything, or keep the coins")
    run.add_argument("--api-url", default=None, help="send the exchange's API calls to this base URL instead (a proxy or a local test exchange)")
    run.add_argument("--timeout-ms", type=int, default=10_000, help="per-request timeout (default 10000)")
    run.add_argument("--rate-limit-ms", type=int, default=None, help="least time between requests (default: ccxt's figure for the exchange)")
    run.add_argument("--json", action="store_true", help="print each step's status as a JSON line")


def run_command(args: argparse.Namespace) -> int:
    from rebal.adapters.ccxt import CcxtVenue
    from rebal.bot.runner import Bot
    from rebal.bot.status import status, table

    console = Console()
    try:
        config = cfg.load_config(args.config)
        interval_s = cfg.parse_duration(args.interval, "--interval") / 1000
        state = args.state or args.config.with_suffix(".state.sqlite")
        credentials = None if args.paper else load_credentials(args.exchange, args.keys)
        _log_safely(credentials)
        exchange = make_exchange(args.exchange, credentials, api_url=args.api_url, timeout_ms=args.timeout_ms, rate_limit_ms=args.rate_limit_ms)
        paper = _paper(exchange, args, config, state) if args.paper else None
        venue = CcxtVenue(paper or exchange, secrets=credentials.secrets() if credentials else ())
        account = None if credentials is None else f"{args.exchange}:{hashlib.sha256(credentials.api_key.encode()).hexdigest()}"
        bot = Bot.open(venue, config, state, slippage_bps=args.slippage_bps, extra=(lambda: {"paper": paper.state()}) if paper else None, account=account)
        if args.stop:
            bot.terminate(args.stop)
    except (RebalError, OSError, ValueError) as e:
        print(f"rebal: {e}", file=sys.stderr)
        return 2
    steps = 0
    try:
        while True:
            try:
                report = bot.step()
            except VenueAuthError as e:
                print(f"rebal: {e}", file=sys.stderr)
                return 2
            except VenueUnavailable as e:
                log.error("%s; the orders in doubt are looked up at the next step", e)
                if args.once:
                    return 3
            except RebalError as e:  # an answer the bot could not use: logged, and the next step tries again
                log.error("step failed: %s", e)
                if args.once:
                    return 3
            else:
                s = status(bot)
                if args.json:
                    sys.stdout.write(json.dumps({"step": report.time_ms, **s, "report": _plain(report)}) + "\n")
                    sys.stdout.flush()
                else:
                    console.print(table(s, title=f"{args.exchange}{' (paper)' if args.paper else ''} · portfolio {s['portfolio_id']} · {s['stage']}"))
                    for line in report.refused + report.skipped:
                        console.print(f"  not done: {line}")
            steps += 1
            if args.once or (args.steps is not None and steps >= args.steps) or bot.finished:
                return 0
            time.sleep(interval_s)
    except KeyboardInterrupt:
        print(f"rebal: stopped; the bot resumes from {state}", file=sys.stderr)
        return 130
    finally:
        bot.close()
        venue.close()


def make_exchange(
    name: str, credentials: Credentials | None, *, api_url: str | None = None, timeout_ms: int = 10_000, rate_limit_ms: int | None = None
) -> Any:
    """A ccxt exchange for spot trading, throttled by ccxt's rate limiter;
    `api_url` replaces the host of its API URLs."""
    import ccxt

    if name not in ccxt.exchanges:
        raise ConfigError(f"--exchange: ccxt has no exchange {name!r}", field="--exchange", value=name)
    options: dict[str, Any] = {"defaultType": "spot"}
    if name.startswith("binance"):
        # Spot markets only, from exchangeInfo: no futures, margin pairs or
        # sapi currency list (which needs more than a trading key's rights).
        options.update({"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False, "fetchCurrencies": False})
    settings: dict[str, Any] = {"enableRateLimit": True, "timeout": timeout_ms, "options": options}
    if rate_limit_ms is not None:
        settings["rateLimit"] = rate_limit_ms
    if credentials is not None:
        settings.update(credentials.ccxt())
    exchange = getattr(ccxt, name)(settings)
    if api_url is not None:
        exchange.urls["api"] = _rebased(exchange.urls["api"], api_url.rstrip("/"))
    return exchange


def _rebased(urls: Any, base: str) -> Any:
    """Every URL in ccxt's `urls['api']` with its scheme and host replaced by `base`."""
    if isinstance(urls, dict):
        return {k: _rebased(v, base) for k, v in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        _host, _, path = urls.partition("://")[2].partition("/")
        return f"{base}/{path}" if path else base
    return urls


def _paper(exchange: Any, args: argparse.Namespace, config: cfg.StrategyConfig, state: Path) -> Any:
    from rebal.adapters.paper import PaperExchange
    from rebal.store import Store

    saved = Store(state).host_state().get("paper") if state.exists() else None
    balances = {config.quote: config.investment}
    if args.paper_balance:
        asset, _, amount = args.paper_balance.partition("=")
        try:
            balances = {asset.strip(): Decimal(amount)}
        except InvalidOperation:
            raise ConfigError(f"--paper-balance: write ASSET=AMOUNT (got {args.paper_balance!r})", field="--paper-balance", value=args.paper_balance) from None
    return PaperExchange(exchange, balances, state=saved)


def _log_safely(credentials: Credentials | None) -> None:
    """Logs to stderr, with the keys taken out of every line (ccxt's included)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(credentials.secrets() if credentials else ()))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _plain(report: Any) -> dict[str, Any]:
    import msgspec

    return dict(msgspec.to_builtins(report))
