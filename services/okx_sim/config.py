"""Configuration of a simulated exchange: instruments, accounts, fees and knobs (pure data)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class InstrumentSpec:
    """One USDT-margined linear perpetual swap as /public/instruments describes it."""

    inst_id: str
    ct_val: Decimal
    lot_sz: Decimal
    min_sz: Decimal
    tick_sz: Decimal
    max_lever: int = 100
    ct_mult: Decimal = Decimal("1")
    base_px: Decimal = Decimal("100")  # where the synthetic walk is anchored
    daily_vol: Decimal = Decimal("0.03")  # relative daily volatility of the walk
    depth_sz: Decimal = Decimal("500")  # contracts available per price level (partial fills)
    base_oi: Decimal = Decimal("1000000")  # open interest around which the market moves (contracts)
    list_time_ms: int = 1573557408000

    @property
    def contract_size(self) -> Decimal:
        """Base-currency quantity of one contract (ctVal x ctMult)."""
        return self.ct_val * self.ct_mult

    @property
    def family(self) -> str:
        """`BTC-USDT` for `BTC-USDT-SWAP`."""
        return self.inst_id.removesuffix("-SWAP")

    @property
    def base_ccy(self) -> str:
        return self.inst_id.split("-")[0]


KNOWN_INSTRUMENTS: dict[str, InstrumentSpec] = {
    "BTC-USDT-SWAP": InstrumentSpec(
        "BTC-USDT-SWAP", Decimal("0.01"), Decimal("0.01"), Decimal("0.01"), Decimal("0.1"),
        base_px=Decimal("60000"), depth_sz=Decimal("500"), base_oi=Decimal("2200000"),
    ),
    "ETH-USDT-SWAP": InstrumentSpec(
        "ETH-USDT-SWAP", Decimal("0.1"), Decimal("0.01"), Decimal("0.01"), Decimal("0.01"),
        base_px=Decimal("3000"), depth_sz=Decimal("1000"), base_oi=Decimal("3000000"),
    ),
    "SOL-USDT-SWAP": InstrumentSpec(
        "SOL-USDT-SWAP", Decimal("1"), Decimal("0.01"), Decimal("0.01"), Decimal("0.01"),
        max_lever=50,
        base_px=Decimal("150"), depth_sz=Decimal("2000"), base_oi=Decimal("8000000"),
    ),
}
DEFAULT_SYMBOLS = ("BTC-USDT-SWAP", "ETH-USDT-SWAP")


def instrument_for(inst_id: str) -> InstrumentSpec:
    """The known spec for `inst_id`, or a generic linear swap (ctVal 1, tick 0.0001)."""
    if inst_id in KNOWN_INSTRUMENTS:
        return KNOWN_INSTRUMENTS[inst_id]
    if not inst_id.endswith("-USDT-SWAP"):
        raise ValueError(f"only USDT-margined swaps are simulated, got {inst_id!r}")
    one = Decimal("1")
    return InstrumentSpec(inst_id, one, one, one, Decimal("0.0001"), max_lever=50)


ACCOUNT_FORMAT = "KEY:SECRET:PASSPHRASE[:demo|:live]"


@dataclass(frozen=True)
class AccountSpec:
    """An account and its one API key: a demo-trading key unless `live` (as on OKX, a key
    works in one environment only; the other answers 50101)."""

    api_key: str
    secret: str
    passphrase: str
    balance: Decimal = Decimal("10000")
    uid: str = ""
    live: bool = False

    @classmethod
    def parse(cls, text: str, balance: Decimal = Decimal("10000")) -> AccountSpec:
        """Parse `KEY:SECRET:PASSPHRASE[:demo|:live]` (demo when the mode is left out)."""
        parts = text.strip().split(":")
        mode = parts.pop() if len(parts) == 4 else "demo"
        if len(parts) != 3 or not all(parts) or mode not in ("demo", "live"):
            raise ValueError(f"account must be {ACCOUNT_FORMAT}")
        return cls(parts[0], parts[1], parts[2], balance, live=mode == "live")


@dataclass(frozen=True)
class SimConfig:
    """Everything a simulated exchange needs; defaults make a usable local OKX."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = any free port
    seed: int = 1
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    instruments: tuple[InstrumentSpec, ...] = ()  # overrides/extends the symbol table
    accounts: tuple[AccountSpec, ...] = (
        AccountSpec("sim-key", "sim-secret", "sim-passphrase"),
    )
    pos_mode: str = "net"  # net | long_short (the OKX names net_mode/long_short_mode work too)
    maker_fee_rate: Decimal = Decimal("0.0002")  # charged, so fills show -notional * rate
    taker_fee_rate: Decimal = Decimal("0.0005")
    mmr_rate: Decimal = Decimal("0.004")  # maintenance margin rate (liquidation)
    slippage: Decimal = Decimal("0")  # relative; market buys fill at last * (1 + slippage)
    default_lever: int = 10
    liquidation: bool = True
    funding_interval_s: int = 8 * 3600
    speed: Decimal = Decimal("1")  # simulated seconds per real second
    tick_interval_s: float = 0.25  # how often the market loop runs (real seconds)
    idle_timeout_s: float = 30.0  # websocket closes with 4004 after this long without output
    auth_window_s: float = 30.0
    test_controls: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    start_ms: int | None = None  # pin the simulated clock start (tests); None = now
    state_file: str | None = None  # keep the exchange state here across restarts (JSON)

    def instrument_specs(self) -> dict[str, InstrumentSpec]:
        """The instruments this exchange lists, by instId."""
        overrides = {spec.inst_id: spec for spec in self.instruments}
        specs = {sym: overrides.get(sym) or instrument_for(sym) for sym in self.symbols}
        specs.update(overrides)
        return specs

    @property
    def okx_pos_mode(self) -> str:
        """`net_mode` or `long_short_mode`."""
        return "long_short_mode" if self.pos_mode.startswith("long_short") else "net_mode"
