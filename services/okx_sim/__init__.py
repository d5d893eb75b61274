"""okx_sim: a local exchange that speaks OKX v5 (REST + public/business/private websockets).

Programmatic use (tests, the ingest tests, the demo)::

    from services.okx_sim import AccountSpec, SimConfig, run_sim

    async with run_sim(SimConfig(seed=7, test_controls=True)) as sim:
        sim.rest_url          # http://127.0.0.1:PORT   (https when tls_cert/tls_key are set)
        sim.ws_public_url     # ws://127.0.0.1:PORT/ws/v5/public
        sim.ws_business_url   # ws://127.0.0.1:PORT/ws/v5/business
        sim.ws_private_url    # ws://127.0.0.1:PORT/ws/v5/private (demo trading; keys are
        sim.ws_live_url("private")  # demo unless AccountSpec(live=True): ...PORT/live/ws/v5/private)
        sim.exchange          # the engine (accounts, orders, fills, bills, positions)
        sim.set_price("BTC-USDT-SWAP", "61000")   # move the market now
        sim.advance(60)                           # jump sim time: closes bars, settles funding
        sim.drop_private("sim-key")               # close that key's private sockets
        sim.repeat_last_push("sim-key")           # send its last private push again
        sim.send_malformed("sim-key")             # a frame that is not JSON
        sim.pause_pushes("sim-key"); sim.resume_pushes("sim-key")

With `test_controls=True` the same controls answer at POST /sim/control/<name>
(set-price, advance, tick, drop-private, drop-business, repeat-push, malformed, pause, resume).
See docs/okx_sim.md.
"""

from .config import AccountSpec, InstrumentSpec, SimConfig
from .runner import SimHandle, run_sim

__all__ = ["AccountSpec", "InstrumentSpec", "SimConfig", "SimHandle", "run_sim"]
