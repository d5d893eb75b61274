// Small DOM helpers: elements, tables, formatted values.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export const dash = "—";

/** A decimal string for reading: grouped, at most `digits` decimals; the exact value on hover. */
export function dec(value, digits = 2) {
  if (value === null || value === undefined) return dash;
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  const text = n.toLocaleString("en-US", { maximumFractionDigits: digits });
  return h("span", { title: value, class: "num" }, text);
}

export function signed(value, digits = 2, suffix = "") {
  if (value === null || value === undefined) return dash;
  const n = Number(value);
  const text = (n > 0 ? "+" : "") + n.toLocaleString("en-US", { maximumFractionDigits: digits }) + suffix;
  return h("span", { title: value, class: "num " + (n > 0 ? "pos" : n < 0 ? "neg" : "") }, text);
}

export const pct = (value) => signed(value, 2, " %");
export const ratio = (value) =>
  value === null || value === undefined ? dash : h("span", { class: "num", title: value }, (Number(value) * 100).toFixed(1) + " %");

export function time(value) {
  if (!value) return dash;
  return h("time", { datetime: value, title: value }, value.slice(0, 19).replace("T", " "));
}

/** A table: columns [[heading, row => cell]], rows. */
export function table(columns, rows, { empty = "nothing yet", rowAttrs = () => ({}) } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, columns.map(([name]) => h("th", {}, name)))),
      h("tbody", {}, rows.map((row) => h("tr", rowAttrs(row), columns.map(([, cell]) => h("td", {}, cell(row) ?? dash))))),
    ),
  );
}

export function note(text, cls = "note") {
  return h("p", { class: cls }, text);
}

export const unavailable = (what) => note(`${what}: not available on this server.`, "note unavailable");

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}
