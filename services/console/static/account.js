// One account: overview (equity curve, open positions, live), closed trades, performance and
// calibration, the tool-call audit.
import { enc, get, has } from "./api.js";
import { lineChart } from "./charts.js";
import { follow } from "./live.js";
import { dash, dec, h, note, pct, ratio, section, signed, table, time, unavailable } from "./ui.js";

const EXIT_REASONS = ["agent", "liquidation", "adl", "external", "reconcile", "take_profit", "stop_loss"];
const TABS = [["overview", "Overview"], ["trades", "Closed trades"], ["performance", "Performance"], ["calls", "Tool calls"]];

export async function accountPage(view, [id, tab = "overview"], ctx) {
  const base = `/accounts/${enc(id)}`;
  const body = h("div", { class: "tab" });
  view.replaceChildren(
    h("h1", {}, "Account ", h("code", {}, id)),
    h("nav", { class: "tabs" }, TABS.map(([key, label]) => h("a", { href: `#/account/${enc(id)}/${key}`, class: key === tab ? "active" : "" }, label))),
    body,
  );
  const render = { overview, trades, performance, calls }[tab] || overview;
  return render(body, base, id, ctx);
}

// ---- overview

async function overview(body, base, id, ctx) {
  const chart = h("div", { class: "chart-box", id: "equity" });
  const positions = h("div", { id: "positions" });
  body.replaceChildren(section("Equity", chart), section("Open positions", positions));
  let busy = false;
  let again = false;
  const refresh = async () => {
    if (busy) return void (again = true);
    busy = true;
    try {
      const [open, curve] = await Promise.all([get(`${base}/positions/open`, { limit: 500 }), equity(base)]);
      if (open === null) return void positions.replaceChildren(note(`no account '${id}' for this token`));
      positions.replaceChildren(openTable(open.items));
      chart.replaceChildren(lineChart(curve.points, { label: "equity" }), note(curve.note));
    } catch (error) {
      ctx.fail(error);
    } finally {
      busy = false;
      if (again) (again = false), refresh();
    }
  };
  await refresh();
  return follow(id, refresh, ctx.setLive);
}

async function equity(base) {
  if (await has("/accounts/{}/equity")) {
    const answer = await get(`${base}/equity`);
    const points = (answer?.points || []).map((p) => ({ time: p.time, value: p.equity_usdt }));
    return { points, note: `equity (USDT), step ${answer?.step ?? dash}` };
  }
  const closed = (await get(`${base}/positions/closed`, { limit: 500 }))?.items || [];
  const rows = closed.slice().reverse();
  let total = 0;
  const points = rows.length ? [{ time: rows[0].entry_time || rows[0].exit_time, value: "0" }] : [];
  for (const row of rows) {
    total += Number(row.realized_pnl_usdt || 0);
    points.push({ time: row.exit_time, value: String(total) });
  }
  return { points, note: "The equity endpoint is not available on this server: cumulative realized PnL (USDT) of the last 500 closed trades." };
}

function plan(p) {
  if (!p) return dash;
  const legs = [];
  if (p.take_profit != null) legs.push(h("span", { class: "leg tp" }, "TP ", dec(p.take_profit, 8)));
  if (p.stop_loss != null) legs.push(h("span", { class: "leg sl" }, "SL ", dec(p.stop_loss, 8)));
  if (p.invalidation_condition) legs.push(h("span", { class: "leg inv", title: p.invalidation_condition }, "if ", p.invalidation_condition));
  if (p.version != null) legs.push(h("span", { class: "muted" }, ` v${p.version}`));
  return h("div", { class: "plan" }, legs);
}

function resting(row) {
  if (row.stop_loss_resting === undefined) return h("span", { class: "muted" }, "plan only");
  return row.stop_loss_resting ? h("span", { class: "pos" }, "resting") : h("span", { class: "neg" }, "not resting");
}

function openTable(rows) {
  const out = table(
    [
      ["Symbol", (r) => r.symbol],
      ["Side", (r) => h("span", { class: `side ${r.side}` }, r.side)],
      ["Qty", (r) => dec(r.quantity, 8)],
      ["Entry", (r) => dec(r.avg_entry_price, 8)],
      ["Mark", (r) => dec(r.mark_price, 8)],
      ["Unrealized", (r) => signed(r.unrealized_pnl_usdt)],
      ["Lev", (r) => (r.leverage == null ? dash : dec(r.leverage, 2))],
      ["Liq. price", (r) => dec(r.liquidation_price, 8)],
      ["Exit plan", (r) => plan(r.exit_plan)],
      ["Stop", resting],
      ["Opened", (r) => time(r.opened_at)],
    ],
    rows,
    { empty: "no open position", rowAttrs: (r) => ({ "data-symbol": r.symbol, class: "position" }) },
  );
  const lacking = rows.some((r) => r.stop_loss_resting === undefined);
  return lacking ? h("div", {}, out, note("Whether each stop rests on the exchange is not in this endpoint yet: the stored plan is shown.")) : out;
}

// ---- closed trades

function filterForm(fields, onSubmit) {
  const form = h("form", { class: "filters" }, fields, h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const params = {};
    for (const [k, v] of new FormData(form)) {
      if (v === "") continue;
      params[k] = /^\d{4}-\d\d-\d\dT/.test(v) ? new Date(v).toISOString() : v;
    }
    onSubmit(params);
  });
  return form;
}

const select = (name, values) => h("label", {}, name.replace("_", " "), h("select", { name }, h("option", { value: "" }, "any"), values.map((v) => h("option", { value: v }, v))));
const input = (name, attrs = {}) => h("label", {}, name, h("input", { name, ...attrs }));

/** A paginated list: first page on filter, then "Load more" follows next_cursor. */
function pager(container, path, renderRows, ctx) {
  let params = {};
  let cursor = null;
  const list = h("div", { class: "rows" });
  const more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
  container.append(list, more);
  const load = async (fresh) => {
    try {
      const answer = await get(path, { ...params, limit: 50, cursor: fresh ? null : cursor });
      if (answer === null) return void list.replaceChildren(unavailable("this list"));
      if (fresh) list.replaceChildren();
      list.append(renderRows(answer.items, fresh));
      cursor = answer.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      ctx.fail(error);
    }
  };
  more.addEventListener("click", () => load(false));
  return async (p) => ((params = p), await load(true));
}

async function trades(body, base, _id, ctx) {
  const box = h("div");
  const apply = pager(box, `${base}/positions/closed`, (rows) => table(
    [
      ["Exit", (r) => time(r.exit_time)],
      ["Symbol", (r) => r.symbol],
      ["Side", (r) => h("span", { class: `side ${r.side}` }, r.side)],
      ["Qty", (r) => dec(r.quantity, 8)],
      ["Entry", (r) => dec(r.entry_price, 8)],
      ["Exit px", (r) => dec(r.exit_price, 8)],
      ["Net PnL", (r) => signed(r.realized_pnl_usdt)],
      ["Fees", (r) => dec(r.fee_usdt, 4)],
      ["Held (min)", (r) => dec(r.holding_minutes, 1)],
      ["Lev", (r) => dec(r.leverage)],
      ["Reason", (r) => h("span", { class: `reason ${r.exit_reason}` }, r.exit_reason)],
    ],
    rows,
    { empty: "no closed trade matches", rowAttrs: () => ({ class: "trade" }) },
  ), ctx);
  const form = filterForm(
    [input("symbol", { placeholder: "BTC-USDT-SWAP" }), select("side", ["long", "short"]), select("exit_reason", EXIT_REASONS), input("from", { type: "datetime-local" }), input("to", { type: "datetime-local" })],
    apply,
  );
  body.replaceChildren(section("Closed trades", form, box));
  await apply({});
  return () => {};
}

// ---- performance and calibration

const WINDOWS = ["all_time", "weekly", "daily"];

function facts(row) {
  const skip = new Set(["exit_attribution", "available"]);
  const items = Object.entries(row).filter(([k, v]) => !skip.has(k) && (v === null || typeof v !== "object"));
  const shown = (k, v) => (v === null ? dash : /(^|_)(win_rate|hold_ratio|resting_ratio)/.test(k) ? ratio(v) : /pct/.test(k) ? pct(v) : String(v));
  return h("dl", { class: "facts" }, items.map(([k, v]) => h("div", {}, h("dt", {}, k.replaceAll("_", " ")), h("dd", {}, shown(k, v)))));
}

function holdBar(row) {
  const part = (side) => Number(Object.entries(row).find(([k]) => k.includes("hold") && k.includes(side))?.[1] ?? NaN);
  const parts = ["long", "short", "flat"].map((s) => [s, part(s)]).filter(([, v]) => Number.isFinite(v));
  if (!parts.length) return null;
  return h("div", { class: "holdbar", title: "time held long / short / flat" }, parts.map(([s, v]) => {
    const span = h("span", { class: `hold ${s}` }, `${s} ${(v * 100).toFixed(0)} %`);
    span.style.flexGrow = String(v); // CSSOM, not a style attribute: the CSP refuses those
    return span;
  }));
}

async function performance(body, base, _id, ctx) {
  const out = h("div");
  const choose = h("select", { name: "window" }, WINDOWS.map((w) => h("option", { value: w }, w)));
  body.replaceChildren(section("Performance", h("label", {}, "window ", choose), out));
  const load = async () => {
    const window = choose.value;
    const parts = [];
    try {
      if (await has("/accounts/{}/performance")) {
        const perf = await get(`${base}/performance`, { window });
        if (!perf || perf.available === false) parts.push(note("The metrics service has not computed this window yet."));
        else {
          parts.push(holdBar(perf), facts(perf));
          const attribution = perf.exit_attribution || [];
          parts.push(h("h3", {}, "Exit attribution"), table(Object.keys(attribution[0] || {}).map((k) => [k, (r) => String(r[k] ?? dash)]), attribution));
        }
      } else parts.push(unavailable("Performance"));
      parts.push(h("h3", {}, "Calibration"));
      if (await has("/accounts/{}/calibration")) {
        const cal = await get(`${base}/calibration`, { window });
        parts.push(table([["Confidence", (r) => r.bucket], ["Closed", (r) => String(r.closed_positions)], ["Win rate", (r) => ratio(r.win_rate)], ["Mean PnL", (r) => signed(r.mean_pnl_usdt)]], cal?.buckets || []));
      } else parts.push(unavailable("Calibration"));
      out.replaceChildren(...parts.filter(Boolean));
    } catch (error) {
      ctx.fail(error);
    }
  };
  choose.addEventListener("change", load);
  await load();
  return () => {};
}

// ---- the tool-call audit

const pretty = (value) => h("pre", {}, JSON.stringify(value, null, 2));

async function calls(body, base, _id, ctx) {
  const box = h("div");
  const apply = pager(box, `${base}/tool-calls`, (rows) => rows.length
    ? h("div", { class: "calls" }, rows.map((r) => h("details", { class: `call ${r.status}` },
        h("summary", {}, time(r.created_at), " ", h("b", {}, r.tool), " ", h("span", { class: `status ${r.status}` }, r.status), " ", r.latency_ms == null ? "" : `${r.latency_ms} ms`),
        r.error ? note(r.error, "note neg") : null,
        h("div", { class: "io" }, h("div", {}, h("h4", {}, "request"), pretty(r.request)), h("div", {}, h("h4", {}, "response"), pretty(r.response))),
      )))
    : note("no tool call matches"), ctx);
  const form = filterForm([input("tool", { placeholder: "execute_trade" }), select("status", ["pending", "success", "failed"]), input("from", { type: "datetime-local" }), input("to", { type: "datetime-local" })], apply);
  body.replaceChildren(section("Tool calls", form, box));
  await apply({});
  return () => {};
}
