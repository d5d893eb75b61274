// The leaderboard (the token's accounts ranked by return), or the accounts list where the server
// has no /leaderboard yet; and the market page (candles, EMA20/50, RSI).
import { enc, get, has } from "./api.js";
import { candleChart } from "./charts.js";
import { follow } from "./live.js";
import { dash, dec, h, note, pct, ratio, section, signed, table, unavailable } from "./ui.js";

// max_drawdown_pct is the fall's size (positive): drawn as a loss, never a green "+"
const fall = (v) => (v == null ? dash : pct(Number(v) ? String(-Number(v)) : v));
const account = (r) => h("a", { href: `#/account/${enc(r.external_id)}/overview`, class: "account" }, r.external_id);

export async function leaderboardPage(view, _params, ctx) {
  const box = h("div", { id: "board" });
  const ranked = await has("/leaderboard");
  view.replaceChildren(section(ranked ? "Leaderboard (all time)" : "Accounts", box));
  const refresh = async () => {
    try {
      if (ranked) {
        const board = await get("/leaderboard", { window: "all_time" });
        box.replaceChildren(table(
          [
            ["#", (_r) => null],
            ["Account", account],
            ["Mode", (r) => r.mode],
            ["Equity", (r) => dec(r.equity_usdt)],
            ["Return", (r) => pct(r.return_pct)],
            ["Sharpe", (r) => dec(r.sharpe_ratio, 2)],
            ["Win rate", (r) => ratio(r.win_rate)],
            ["Max DD", (r) => fall(r.max_drawdown_pct)],
            ["Trades", (r) => String(r.trades ?? dash)],
            ["Fees", (r) => dec(r.fees_usdt)],
            ["Avg lev", (r) => dec(r.average_leverage)],
            ["Avg conf", (r) => dec(r.average_confidence)],
            ["Realized", (r) => signed(r.realized_pnl_usdt)],
          ],
          board?.items || [],
          { empty: "no account for this token", rowAttrs: (r) => ({ class: "account-row", "data-account": r.external_id }) },
        ), note(`as of ${board?.as_of ?? dash}`));
        box.querySelectorAll("tbody tr td:first-child").forEach((td, i) => (td.textContent = String(i + 1)));
        return;
      }
      const accounts = await get("/accounts", { limit: 500 });
      box.replaceChildren(table(
        [
          ["Account", account],
          ["Mode", (r) => r.mode],
          ["Status", (r) => r.status],
          ["Equity", (r) => dec(r.equity_usdt)],
          ["Return", (r) => (r.return_pct === undefined ? dash : pct(r.return_pct))],
          ["Unrealized", (r) => signed(r.unrealized_pnl_usdt)],
          ["Open", (r) => String(r.open_positions)],
        ],
        accounts?.items || [],
        { empty: "no account for this token", rowAttrs: (r) => ({ class: "account-row", "data-account": r.external_id }) },
      ), note("The ranking (/leaderboard) is not available on this server: the token's accounts, newest first."));
    } catch (error) {
      ctx.fail(error);
    }
  };
  await refresh();
  return follow(null, refresh, ctx.setLive);
}

const TIMEFRAMES = ["1m", "3m", "5m", "15m", "30m", "1H", "4H", "1D"];

export async function marketPage(view, [symbol = "BTC-USDT-SWAP"], ctx) {
  const chart = h("div", { class: "chart-box", id: "market" });
  const form = h("form", { class: "filters" },
    h("label", {}, "symbol", h("input", { name: "symbol", value: symbol, pattern: "[A-Z0-9]+-USDT-SWAP" })),
    h("label", {}, "timeframe", h("select", { name: "timeframe" }, TIMEFRAMES.map((t) => h("option", { value: t, selected: t === "3m" }, t)))),
    h("button", { type: "submit" }, "Show"),
  );
  view.replaceChildren(section("Market", form, chart));
  if (!(await has("/market/{}"))) return void chart.replaceChildren(unavailable("Market data"));
  const load = async () => {
    const s = form.elements.symbol.value.trim();
    try {
      const answer = await get(`/market/${enc(s)}`, { timeframe: form.elements.timeframe.value, limit: 100 });
      const candles = answer?.candles || [];
      if (!candles.length) return void chart.replaceChildren(note(`no candles for ${s}`));
      const last = candles.at(-1);
      chart.replaceChildren(
        h("div", { class: "legend" },
          h("span", {}, "close ", dec(last.close, 8)),
          h("span", { class: "ema20" }, "EMA20 ", dec(last.ema20, 8)),
          h("span", { class: "ema50" }, "EMA50 ", dec(last.ema50, 8)),
          h("span", { class: "rsi" }, "RSI14 ", dec(last.rsi14, 1)),
        ),
        candleChart(candles),
      );
    } catch (error) {
      ctx.fail(error);
    }
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/market/${enc(form.elements.symbol.value.trim())}`;
  });
  form.elements.timeframe.addEventListener("change", load);
  await load();
  const timer = setInterval(load, 15000);
  return () => clearInterval(timer);
}
