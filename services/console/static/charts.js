// Charts drawn as inline SVG: an equity line, and candles with EMA20/50 over an RSI pane.
const NS = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text = undefined) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function scale(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

function extent(values) {
  const finite = values.filter(Number.isFinite);
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

const short = (t) => new Date(t).toISOString().slice(0, 16).replace("T", " ");
const num = (v) => (Math.abs(v) >= 1000 ? v.toFixed(0) : v.toPrecision(6).replace(/\.?0+$/, ""));

function polyline(points, cls) {
  const d = points
    .filter(([, y]) => Number.isFinite(y))
    .map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`)
    .join("");
  return el("path", { d, class: cls, fill: "none" });
}

function yAxis(svg, y, [lo, hi], x, cls = "axis") {
  for (const v of [lo, (lo + hi) / 2, hi]) {
    svg.append(el("line", { x1: x, x2: "100%", y1: y(v), y2: y(v), class: "grid" }));
    svg.append(el("text", { x: 4, y: y(v) + 4, class: cls }, num(v)));
  }
}

/** points: [{time, value}] oldest first. An SVG with one circle.point per point. */
export function lineChart(points, { width = 800, height = 260, label = "" } = {}) {
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart equity", role: "img", "aria-label": label });
  if (!points.length) {
    svg.append(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "no points yet"));
    return svg;
  }
  const left = 70;
  const times = points.map((p) => Date.parse(p.time));
  const values = points.map((p) => Number(p.value));
  const x = scale(Math.min(...times), Math.max(...times), left, width - 10);
  const dom = extent(values);
  const y = scale(dom[0], dom[1], height - 24, 10);
  yAxis(svg, y, dom, left);
  const xy = points.map((_, i) => [x(times[i]), y(values[i])]);
  svg.append(polyline(xy, "line"));
  xy.forEach(([cx, cy], i) => {
    const dot = el("circle", { cx, cy, r: points.length > 60 ? 1.5 : 3, class: "point" });
    dot.append(el("title", {}, `${short(times[i])}  ${points[i].value}`));
    svg.append(dot);
  });
  svg.append(el("text", { x: left, y: height - 6, class: "axis" }, short(times[0])));
  svg.append(el("text", { x: width - 10, y: height - 6, class: "axis", "text-anchor": "end" }, short(times.at(-1))));
  return svg;
}

/** candles: the /market answer's, oldest first. Price pane with EMA20/50, RSI(14) pane below. */
export function candleChart(candles, { width = 900, height = 420 } = {}) {
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart candles", role: "img", "aria-label": "candles" });
  if (!candles.length) return svg;
  const left = 70;
  const priceBottom = height * 0.7;
  const rsiTop = priceBottom + 24;
  const step = (width - left - 10) / candles.length;
  const x = (i) => left + step * (i + 0.5);
  const n = (c, k) => (c[k] === null || c[k] === undefined ? NaN : Number(c[k]));
  const prices = candles.flatMap((c) => [n(c, "high"), n(c, "low"), n(c, "ema20"), n(c, "ema50")]);
  const dom = extent(prices);
  const y = scale(dom[0], dom[1], priceBottom, 10);
  yAxis(svg, y, dom, left);
  candles.forEach((c, i) => {
    const [o, h, l, cl] = ["open", "high", "low", "close"].map((k) => n(c, k));
    const cls = cl >= o ? "up" : "down";
    const g = el("g", { class: `candle ${cls}` });
    g.append(el("line", { x1: x(i), x2: x(i), y1: y(h), y2: y(l) }));
    const top = Math.min(y(o), y(cl));
    g.append(el("rect", { x: x(i) - step * 0.35, y: top, width: step * 0.7, height: Math.max(1, Math.abs(y(o) - y(cl))) }));
    g.append(el("title", {}, `${short(c.time)} O ${c.open} H ${c.high} L ${c.low} C ${c.close}`));
    svg.append(g);
  });
  svg.append(polyline(candles.map((c, i) => [x(i), y(n(c, "ema20"))]), "ema20"));
  svg.append(polyline(candles.map((c, i) => [x(i), y(n(c, "ema50"))]), "ema50"));
  const r = scale(0, 100, height - 20, rsiTop);
  for (const v of [30, 70]) {
    svg.append(el("line", { x1: left, x2: width - 10, y1: r(v), y2: r(v), class: "guide" }));
    svg.append(el("text", { x: 4, y: r(v) + 4, class: "axis" }, String(v)));
  }
  svg.append(el("text", { x: left, y: rsiTop - 6, class: "axis" }, "RSI 14"));
  svg.append(polyline(candles.map((c, i) => [x(i), r(n(c, "rsi14"))]), "rsi"));
  svg.append(el("text", { x: left, y: height - 4, class: "axis" }, short(candles[0].time)));
  svg.append(el("text", { x: width - 10, y: height - 4, class: "axis", "text-anchor": "end" }, short(candles.at(-1).time)));
  return svg;
}
