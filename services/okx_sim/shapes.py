"""Domain records -> OKX v5 JSON objects (every number a string, as OKX sends them)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from .config import InstrumentSpec
from .exchange import AccountView, PositionView
from .margin import Risk, qty
from .market import Candle, Funding, Ticker
from .models import ZERO, Account, AlgoOrder, Bill, Fill, Order, Position
from .protocol import fmt

Json = dict[str, Any]


def instrument(spec: InstrumentSpec) -> Json:
    """A /public/instruments SWAP row."""
    return {
        "instType": "SWAP", "instId": spec.inst_id, "instFamily": spec.family,
        "uly": spec.family, "category": "1", "baseCcy": "", "quoteCcy": "", "settleCcy": "USDT",
        "ctVal": fmt(spec.ct_val), "ctMult": fmt(spec.ct_mult), "ctValCcy": spec.base_ccy,
        "ctType": "linear", "optType": "", "stk": "", "listTime": str(spec.list_time_ms),
        "expTime": "", "lever": str(spec.max_lever), "tickSz": fmt(spec.tick_sz),
        "lotSz": fmt(spec.lot_sz), "minSz": fmt(spec.min_sz), "alias": "", "state": "live",
        "maxLmtSz": "100000000", "maxMktSz": "12000", "maxLmtAmt": "20000000",
        "maxMktAmt": "", "maxTwapSz": "", "maxIcebergSz": "", "maxTriggerSz": "",
        "maxStopSz": "", "ruleType": "normal",
    }


def candle_row(c: Candle) -> list[str]:
    """[ts,o,h,l,c,vol,volCcy,volCcyQuote,confirm]."""
    return [str(c.ts), fmt(c.o), fmt(c.h), fmt(c.low), fmt(c.c), fmt(c.vol), fmt(c.vol_ccy),
            fmt(c.vol_quote), "1" if c.confirmed else "0"]


def ticker(t: Ticker) -> Json:
    """A tickers push / GET /market/ticker element."""
    return {
        "instType": "SWAP", "instId": t.inst_id, "last": fmt(t.last), "lastSz": fmt(t.last_sz),
        "askPx": fmt(t.ask_px), "askSz": fmt(t.ask_sz), "bidPx": fmt(t.bid_px),
        "bidSz": fmt(t.bid_sz), "open24h": fmt(t.open24h), "high24h": fmt(t.high24h),
        "low24h": fmt(t.low24h), "volCcy24h": fmt(t.vol_ccy24h), "vol24h": fmt(t.vol24h),
        "sodUtc0": fmt(t.sod_utc0), "sodUtc8": fmt(t.sod_utc8), "ts": str(t.ts),
    }


def funding_rate(inst_id: str, f: Funding, ts: int) -> Json:
    """A funding-rate push element."""
    return {
        "formulaType": "noRate", "fundingRate": fmt(f.rate), "fundingTime": str(f.funding_time),
        "impactValue": "", "instId": inst_id, "instType": "SWAP", "interestRate": "0",
        "method": "current_period", "maxFundingRate": "0.00375",
        "minFundingRate": "-0.00375", "nextFundingRate": "",
        "nextFundingTime": str(f.next_funding_time), "premium": "",
        "settFundingRate": fmt(f.settled_rate), "settState": "settled", "ts": str(ts),
    }


def open_interest(spec: InstrumentSpec, oi: Decimal, px: Decimal, ts: int) -> Json:
    """An open-interest push element."""
    oi_ccy = oi * spec.contract_size
    return {"instId": spec.inst_id, "instType": "SWAP", "oi": fmt(oi), "oiCcy": fmt(oi_ccy),
            "oiUsd": fmt(oi_ccy * px), "ts": str(ts)}


def mark_price(inst_id: str, px: Decimal, ts: int) -> Json:
    """A mark-price push element."""
    return {"instType": "SWAP", "instId": inst_id, "markPx": fmt(px), "ts": str(ts)}


def order(o: Order, fill: Fill | None, last: Decimal, attached: Sequence[AlgoOrder] = ()
          ) -> Json:
    """An orders-channel element; the fill* fields describe only `fill` (empty otherwise)."""
    f = fill
    return {
        "instType": "SWAP", "instId": o.inst_id, "tgtCcy": "", "ccy": "", "ordId": o.ord_id,
        "clOrdId": o.cl_ord_id, "algoClOrdId": o.algo_cl_ord_id, "algoId": o.algo_id,
        "tag": o.tag,
        "px": fmt(o.px), "sz": fmt(o.sz), "notionalUsd": "", "ordType": o.ord_type,
        "side": o.side, "posSide": o.pos_side, "tdMode": o.td_mode,
        "fillPx": fmt(f.fill_px) if f else "", "tradeId": f.trade_id if f else "",
        "fillSz": fmt(f.fill_sz) if f else "0", "fillPnl": fmt(f.pnl) if f else "0",
        "fillTime": str(f.ts) if f else "", "fillFee": fmt(f.fee) if f else "0",
        "fillFeeCcy": "USDT" if f else "", "fillNotionalUsd": "",
        "fillMarkPx": fmt(f.mark_px) if f else "", "fillPxVol": "", "fillPxUsd": "",
        "fillMarkVol": "", "fillFwdPx": "", "fillIdxPx": "", "execType": f.exec_type if f else "",
        "accFillSz": fmt(o.acc_fill_sz), "avgPx": fmt(o.avg_px), "state": o.state,
        "lever": str(o.lever), "attachAlgoClOrdId": "", "tpTriggerPx": "",
        "tpTriggerPxType": "", "tpOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "",
        "slOrdPx": "", "attachAlgoOrds": [attach_algo(a) for a in attached],
        "linkedAlgoOrd": {"algoId": ""}, "stpId": "",
        "stpMode": "cancel_maker", "feeCcy": "USDT", "fee": fmt(o.fee), "rebateCcy": "USDT",
        "rebate": "0", "pnl": fmt(o.pnl), "source": o.source, "cancelSource": o.cancel_source,
        "amendSource": "", "category": o.category, "isTpLimit": "false",
        "uTime": str(o.u_time), "cTime": str(o.c_time), "reqId": "", "amendResult": "",
        "reduceOnly": "true" if o.reduce_only else "false", "quickMgnType": "",
        "code": "0", "msg": "", "tradeQuoteCcy": "", "lastPx": fmt(last),
    }


def fill(f: Fill) -> Json:
    """A GET /trade/fills(-history) row."""
    return {
        "instType": "SWAP", "instId": f.inst_id, "tradeId": f.trade_id, "ordId": f.ord_id,
        "clOrdId": f.cl_ord_id, "billId": f.bill_id, "subType": f.sub_type, "tag": f.tag,
        "fillPx": fmt(f.fill_px), "fillSz": fmt(f.fill_sz), "fillIdxPx": "",
        "fillPnl": fmt(f.pnl), "fillPxVol": "", "fillPxUsd": "", "fillMarkVol": "",
        "fillFwdPx": "", "fillMarkPx": fmt(f.mark_px), "side": f.side, "posSide": f.pos_side,
        "execType": f.exec_type, "feeCcy": "USDT", "fee": fmt(f.fee), "feeRate": fmt(f.fee_rate),
        "ts": str(f.ts), "fillTime": str(f.ts), "tradeQuoteCcy": "USDT",
    }


def bill(b: Bill) -> Json:
    """A GET /account/bills row."""
    return {
        "billId": b.bill_id, "type": b.type, "subType": b.sub_type, "ts": str(b.ts),
        "fillTime": str(b.ts), "balChg": fmt(b.bal_chg), "bal": fmt(b.bal), "sz": fmt(b.sz),
        "px": fmt(b.px), "pnl": fmt(b.pnl), "fee": fmt(b.fee), "ccy": "USDT",
        "instType": "SWAP", "instId": b.inst_id, "ordId": b.ord_id, "tradeId": b.trade_id,
        "mgnMode": b.mgn_mode, "execType": b.exec_type, "clOrdId": "", "tag": "",
        "posBal": "0", "posBalChg": "0", "interest": "0", "from": "", "to": "", "notes": "",
    }


def position(view: PositionView | None, pos: Position, spec: InstrumentSpec, mark: Decimal,
             last: Decimal, mmr_rate: Decimal) -> Json:
    """A positions element (REST and websocket); a closed position is shown with pos 0."""
    r = view.risk if view else Risk(ZERO, ZERO, ZERO, ZERO)
    liq = view.liq_px if view else None
    notional = abs(qty(pos, spec)) * mark
    return {
        "instType": "SWAP", "instId": pos.inst_id, "mgnMode": pos.mgn_mode, "posId": pos.pos_id,
        "posSide": pos.pos_side, "pos": fmt(pos.pos), "baseBal": "", "quoteBal": "",
        "baseBorrowed": "", "baseInterest": "", "quoteBorrowed": "", "quoteInterest": "",
        "posCcy": "", "availPos": "", "avgPx": fmt(pos.avg_px) if pos.pos else "",
        "nonSettleAvgPx": "", "markPx": fmt(mark), "upl": fmt(r.upl),
        "uplRatio": fmt(r.upl / r.imr) if r.imr else "0", "uplLastPx": fmt(r.upl),
        "uplRatioLastPx": fmt(r.upl / r.imr) if r.imr else "0", "lever": str(pos.lever),
        "liqPx": fmt(liq), "imr": fmt(r.imr) if pos.mgn_mode == "cross" else "",
        "margin": fmt(r.imr) if pos.mgn_mode == "isolated" else "", "mgnRatio": "",
        "mmr": fmt(r.mmr), "liab": "", "liabCcy": "", "interest": "0",
        "tradeId": pos.trade_id, "optVal": "", "pendingCloseOrdLiabVal": "",
        "notionalUsd": fmt(notional), "adl": "1", "ccy": "USDT", "last": fmt(last),
        "idxPx": fmt(mark), "usdPx": "", "bePx": "", "deltaBS": "", "deltaPA": "",
        "gammaBS": "", "gammaPA": "", "thetaBS": "", "thetaPA": "", "vegaBS": "", "vegaPA": "",
        "spotInUseAmt": "", "spotInUseCcy": "", "clSpotInUseAmt": "", "maxSpotInUseAmt": "",
        "bizRefId": "", "bizRefType": "", "realizedPnl": fmt(pos.realized_pnl),
        "settledPnl": "", "pnl": fmt(pos.pnl), "fee": fmt(pos.fee),
        "fundingFee": fmt(pos.funding_fee), "liqPenalty": fmt(pos.liq_penalty),
        "closeOrderAlgo": [], "cTime": str(pos.c_time), "uTime": str(pos.u_time),
        "pTime": str(pos.u_time),
    }


def balance(acct: Account, v: AccountView) -> Json:
    """GET /account/balance data[0] and the account channel element."""
    ut = str(acct.u_time)
    detail = {
        "ccy": "USDT", "eq": fmt(v.eq), "cashBal": fmt(acct.cash), "uTime": ut,
        "isoEq": "0", "availEq": fmt(v.avail), "disEq": fmt(v.eq),
        "availBal": fmt(acct.cash - v.imr - v.frozen), "frozenBal": fmt(v.imr + v.frozen),
        "ordFrozen": fmt(v.frozen), "liab": "0", "upl": fmt(v.upl), "uplLiab": "0",
        "crossLiab": "0", "isoLiab": "0", "mgnRatio": fmt(v.eq / v.mmr) if v.mmr else "",
        "interest": "0", "twap": "0", "maxLoan": "", "eqUsd": fmt(v.eq),
        "notionalLever": "", "stgyEq": "0", "isoUpl": "0", "spotInUseAmt": "",
        "imr": fmt(v.imr), "mmr": fmt(v.mmr), "fixedBal": "0", "borrowFroz": "",
    }
    notional = sum((pv.risk.notional for pv in v.positions), ZERO)
    return {
        "uTime": ut, "totalEq": fmt(v.eq), "isoEq": "0", "adjEq": fmt(v.eq),
        "ordFroz": fmt(v.frozen), "imr": fmt(v.imr), "mmr": fmt(v.mmr), "borrowFroz": "",
        "mgnRatio": fmt(v.eq / v.mmr) if v.mmr else "", "notionalUsd": fmt(notional),
        "upl": fmt(v.upl), "details": [detail],
    }


def balance_and_position(acct: Account, reason: str, positions: list[Position],
                         fills: list[Fill], ts: int) -> Json:
    """A balance_and_position element."""
    return {
        "pTime": str(ts), "eventType": reason,
        "balData": [{"ccy": "USDT", "cashBal": fmt(acct.cash), "uTime": str(acct.u_time)}],
        "posData": [{
            "posId": p.pos_id, "tradeId": p.trade_id, "instId": p.inst_id, "instType": "SWAP",
            "mgnMode": p.mgn_mode, "posSide": p.pos_side, "pos": fmt(p.pos), "ccy": "USDT",
            "posCcy": "", "avgPx": fmt(p.avg_px) if p.pos else "", "nonSettleAvgPx": "",
            "settledPnl": "", "uTime": str(p.u_time),
        } for p in positions],
        "trades": [{"instId": f.inst_id, "tradeId": f.trade_id} for f in fills],
    }


def _ord_px(trigger: Decimal | None, px: Decimal | None) -> str:
    """A leg's order price: "-1" for market, "" without the leg."""
    if trigger is None:
        return ""
    return "-1" if px is None else fmt(px)


def attach_algo(a: AlgoOrder) -> Json:
    """An order's `attachAlgoOrds` element."""
    return {
        "attachAlgoId": a.algo_id, "attachAlgoClOrdId": a.algo_cl_ord_id, "tpOrdKind": "condition",
        "tpTriggerPx": fmt(a.tp_trigger_px), "tpTriggerRatio": "",
        "tpTriggerPxType": a.tp_trigger_px_type, "tpOrdPx": _ord_px(a.tp_trigger_px, a.tp_ord_px),
        "slTriggerPx": fmt(a.sl_trigger_px), "slTriggerRatio": "",
        "slTriggerPxType": a.sl_trigger_px_type, "slOrdPx": _ord_px(a.sl_trigger_px, a.sl_ord_px),
        "sz": fmt(a.sz), "amendPxOnTriggerType": "0", "failCode": "", "failReason": "",
    }


def algo(a: AlgoOrder) -> Json:
    """An orders-algo push element and a GET /trade/orders-algo-* row."""
    return {
        "instType": "SWAP", "instId": a.inst_id, "ccy": "", "ordId": a.ord_id,
        "ordIdList": [a.ord_id] if a.ord_id else [], "algoId": a.algo_id, "clOrdId": "",
        "sz": fmt(a.sz), "closeFraction": a.close_fraction, "ordType": a.ord_type,
        "side": a.side, "posSide": a.pos_side, "tdMode": a.td_mode, "tgtCcy": "",
        "state": a.state, "lever": str(a.lever),
        "tpTriggerPx": fmt(a.tp_trigger_px), "tpTriggerPxType": a.tp_trigger_px_type,
        "tpOrdPx": _ord_px(a.tp_trigger_px, a.tp_ord_px),
        "slTriggerPx": fmt(a.sl_trigger_px), "slTriggerPxType": a.sl_trigger_px_type,
        "slOrdPx": _ord_px(a.sl_trigger_px, a.sl_ord_px),
        "triggerPx": "", "triggerPxType": "", "ordPx": "", "advanceOrdType": "",
        "actualSz": fmt(a.actual_sz), "actualPx": fmt(a.actual_px) if a.actual_side else "",
        "actualSide": a.actual_side, "notionalUsd": "", "tag": a.tag,
        "triggerTime": str(a.trigger_time) if a.trigger_time else "",
        "reduceOnly": "true" if a.reduce_only else "false", "quickMgnType": "",
        "last": fmt(a.last), "failCode": a.fail_code, "algoClOrdId": a.algo_cl_ord_id,
        "reqId": a.req_id, "amendResult": a.amend_result, "amendPxOnTriggerType": "0",
        "attachAlgoOrds": [], "linkedOrd": {"ordId": ""}, "isTradeBorrowMode": "",
        "callbackRatio": "", "callbackSpread": "", "activePx": "", "moveTriggerPx": "",
        "pxVar": "", "pxSpread": "", "szLimit": "", "pxLimit": "", "timeInterval": "",
        "chaseType": "", "chaseVal": "", "maxChaseType": "", "maxChaseVal": "",
        "tradeQuoteCcy": "USDT", "cTime": str(a.c_time), "uTime": str(a.u_time),
    }
