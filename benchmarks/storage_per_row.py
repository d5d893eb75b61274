"""Benchmark: bytes on disk per row of the tables that grow, for docs/scaling.md's arithmetic.

    .venv/bin/python -m benchmarks.storage_per_row [--rows 200000]

Rows shaped like the product's own (the raw payload an OKX orders push carries, as okx_sim
builds it; a tool call's request and response of typical sizes) are inserted with SQL into a
freshly migrated database, VACUUM ANALYZE runs, and the total size of each table — heap, TOAST
and every index, summed over its partitions when it is partitioned — is divided by its rows.
The reference is the same rows' raw text size (`octet_length` of the row as text), measured in
the same run: the ratio says what PostgreSQL's row headers, alignment and indexes add.
PostgreSQL compresses a value only in a row over ~2 kB (TOAST_TUPLE_THRESHOLD; a lower
toast_tuple_target does not change when it starts), so a 1.4 kB raw payload is stored as is
(tried with pglz and toast_tuple_target = 128: no change; this server has no lz4).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime

import asyncpg

from benchmarks.fills_throughput import fresh_database, servers

ACCOUNTS = 100

# One orders-channel element as okx_sim sends it (services/okx_sim/shapes.py `order`): what a
# fill's and an order's raw_payload hold.
PUSH = {
    "instType": "SWAP", "instId": "BTC-USDT-SWAP", "tgtCcy": "", "ccy": "", "ordId": "700000000000123456",
    "clOrdId": "3f2a9c1e0b7d4e5f8a6b2c1d0e9f8a7b", "algoClOrdId": "", "algoId": "", "tag": "",
    "px": "", "sz": "1.5", "notionalUsd": "", "ordType": "market", "side": "buy", "posSide": "net",
    "tdMode": "cross", "fillPx": "61234.5", "tradeId": "912345678", "fillSz": "1.5",
    "fillPnl": "0", "fillTime": "1764720000123", "fillFee": "-0.45925875", "fillFeeCcy": "USDT",
    "fillNotionalUsd": "", "fillMarkPx": "61230.1", "fillPxVol": "", "fillPxUsd": "",
    "fillMarkVol": "", "fillFwdPx": "", "fillIdxPx": "", "execType": "T", "accFillSz": "1.5",
    "avgPx": "61234.5", "state": "filled", "lever": "5", "attachAlgoClOrdId": "",
    "tpTriggerPx": "", "tpTriggerPxType": "", "tpOrdPx": "", "slTriggerPx": "",
    "slTriggerPxType": "", "slOrdPx": "", "attachAlgoOrds": [], "linkedAlgoOrd": {"algoId": ""},
    "stpId": "", "stpMode": "cancel_maker", "feeCcy": "USDT", "fee": "-0.45925875",
    "rebateCcy": "USDT", "rebate": "0", "pnl": "0", "source": "", "cancelSource": "",
    "amendSource": "", "category": "normal", "isTpLimit": "false", "uTime": "1764720000125",
    "cTime": "1764720000101", "reqId": "", "amendResult": "", "reduceOnly": "false",
    "quickMgnType": "", "code": "0", "msg": "", "tradeQuoteCcy": "", "lastPx": "61234.5",
}
# A get_account_state call: the request is small, the answer a few positions and the plan.
REQUEST = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "get_account_state",
                                                                 "arguments": {}}}
RESPONSE = {"account": {"equity_usdt": "10234.56781234", "available_usdt": "8123.1"},
            "positions": [{"symbol": s, "quantity": "1.5", "entry_price": "61234.5",
                           "mark_price": "61300.2", "unrealized_pnl_usdt": "98.55",
                           "leverage": "5", "liquidation_price": "49876.3",
                           "exit_plan": {"take_profit": "65000", "stop_loss": "58000"},
                           "confidence": "72.5"} for s in ("BTC-USDT-SWAP", "ETH-USDT-SWAP")]}

# Each table: the INSERT ... SELECT over generate_series(1, $1) AS g that fills it.
FILL_TABLES: dict[str, str] = {
    "orders": """
        INSERT INTO aitrader.orders (id, account_id, symbol, side, order_type, size, filled_size,
            status, leverage, confidence, exchange_order_id, client_order_id, pos_side,
            avg_fill_price, raw_payload, created_at)
        SELECT md5('o' || g)::uuid, a.id, 'BTC-USDT-SWAP', 'buy', 'market', 1.5, 1.5, 'filled',
               5, 72.5, (700000000000000000 + g)::text, md5('c' || g), 'net', 61234.5, $2::jsonb,
               now() - g * interval '1 second'
        FROM generate_series(1, $1) AS g
        JOIN (SELECT id, row_number() OVER () - 1 AS n FROM aitrader.accounts) a
          ON a.n = g % 100""",
    "fills": """
        INSERT INTO aitrader.fills (account_id, order_id, symbol, side, price, size, fee_usdt,
            pnl_usdt, confidence, "timestamp", exchange_trade_id, exchange_order_id, pos_side,
            exec_type, fee_ccy, leverage, raw_payload)
        SELECT o.account_id, o.id, o.symbol, 'buy', 61234.5, 1.5, -0.45925875, 0, 72.5,
               o.created_at, (900000000 + g)::text, o.exchange_order_id, 'net', 'T', 'USDT', 5,
               $2::jsonb
        FROM generate_series(1, $1) AS g JOIN aitrader.orders o ON o.id = md5('o' || g)::uuid""",
    "balance_snapshots": """
        INSERT INTO aitrader.balance_snapshots (account_id, available_usdt, locked_usdt,
            cash_usdt, equity_usdt, raw_payload, as_of)
        SELECT a.id, 8123.1, 2111.46781234, 10000, 10234.56781234, $2::jsonb,
               now() - g * interval '1 minute'
        FROM generate_series(1, $1) AS g
        JOIN (SELECT id, row_number() OVER () - 1 AS n FROM aitrader.accounts) a
          ON a.n = g % 100""",
    "equity_snapshots": """
        INSERT INTO aitrader.equity_snapshots (account_id, equity, cash, net_position_value,
            unrealized_pnl, as_of)
        SELECT a.id, 10234.56781234, 10000, 91851.75, 234.56781234,
               now() - g * interval '1 minute'
        FROM generate_series(1, $1) AS g
        JOIN (SELECT id, row_number() OVER () - 1 AS n FROM aitrader.accounts) a
          ON a.n = g % 100""",
    "market_snapshots": """
        INSERT INTO aitrader.market_snapshots (symbol, timeframe, as_of, price, ema20, ema50,
            macd, rsi7, rsi14, funding_rate, open_interest, open_interest_avg, open, high, low,
            volume)
        SELECT 'SYM' || (g % 20) || '-USDT-SWAP', '1m', now() - (g / 20) * interval '1 minute',
               61234.5, 61200.12345678, 61100.87654321, 12.3456789, 55.1234, 53.9876,
               0.00010123, 123456.7, 123000.1, 61200, 61250.5, 61190.25, 1234.5
        FROM generate_series(1, $1) AS g""",
    "mcp_tool_calls": """
        INSERT INTO aitrader.mcp_tool_calls (id, account_id, tool_name, request_payload,
            response_payload, status, latency_ms, transport, created_at)
        SELECT md5('t' || g)::uuid, a.id, 'get_account_state', $3::jsonb, $2::jsonb, 'success',
               3, 'http', now() - g * interval '1 second'
        FROM generate_series(1, $1) AS g
        JOIN (SELECT id, row_number() OVER () - 1 AS n FROM aitrader.accounts) a
          ON a.n = g % 100""",
}

# Summed over the leaves when partitioned (pg_partition_tree is empty for a plain table).
SIZE = """
    SELECT coalesce((SELECT sum(pg_total_relation_size(relid))
                     FROM pg_partition_tree($1::regclass) WHERE isleaf),
                    pg_total_relation_size($1::regclass))"""


async def measure(dsn: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """INSERT INTO aitrader.accounts (external_id, mode)
               SELECT 'bench-' || g, 'simulated' FROM generate_series(1, $1) g""",
            ACCOUNTS)
        push, request, response = json.dumps(PUSH), json.dumps(REQUEST), json.dumps(RESPONSE)
        print(f"{'table':<18} {'rows':>9} {'bytes/row':>10} {'text/row':>9} {'ratio':>6}")
        for table, sql in FILL_TABLES.items():
            args: tuple[object, ...] = (rows,)
            if "$3" in sql:
                args = (rows, response, request)
            elif "$2" in sql:
                args = (rows, push)
            await conn.execute(sql, *args)
            await conn.execute(f"VACUUM ANALYZE aitrader.{table}")
            count = await conn.fetchval(f"SELECT count(*) FROM aitrader.{table}")
            size = int(await conn.fetchval(SIZE, f"aitrader.{table}"))
            text = await conn.fetchval(
                f"SELECT avg(octet_length(t::text)) FROM aitrader.{table} t")
            print(f"{table:<18} {count:>9,} {size / count:>10.0f} {float(text):>9.0f} "
                  f"{size / count / float(text):>5.2f}x")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per table")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.rows:,} rows per table")
    with servers() as (admin_dsn, _nats_url):
        async def run() -> None:
            await measure(await fresh_database(admin_dsn), args.rows)
        asyncio.run(run())


if __name__ == "__main__":
    main()
