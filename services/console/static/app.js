// The dashboard's shell: the token prompt, hash routing, errors shown on the page.
import { token, Unauthorized } from "./api.js";
import { accountPage } from "./account.js";
import { leaderboardPage, marketPage } from "./board.js";
import { h, note } from "./ui.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const live = document.getElementById("live");
let stop = () => {};
let generation = 0;

const ROUTES = [
  [/^#\/account\/([^/]+)(?:\/([a-z]+))?$/, accountPage],
  [/^#\/market(?:\/([^/]+))?$/, marketPage],
  [/^#?\/?$/, leaderboardPage],
];

function prompt(message = "") {
  nav.hidden = true;
  live.hidden = true;
  const field = h("input", { type: "password", name: "token", autocomplete: "off", required: true, placeholder: "aitr_…", "aria-label": "console token" });
  const form = h("form", { class: "card login", id: "login" },
    h("h1", {}, "Console token"),
    h("p", {}, "Paste a token from ", h("code", {}, "aitrader token create --scope console --account ID"), ". It stays in this tab (sessionStorage) and is sent only as a header."),
    message ? note(message, "note neg") : null,
    field,
    h("button", { type: "submit" }, "Open"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    token.set(field.value);
    route();
  });
  view.replaceChildren(form);
  field.focus();
}

function setLive(state) {
  live.hidden = false;
  live.textContent = state;
  live.className = `live state-${state}`;
}

function fail(error) {
  if (error instanceof Unauthorized) {
    token.clear();
    stop();
    prompt("That token was refused (unknown, revoked, expired or without the console scope).");
    return;
  }
  if (error?.name === "AbortError") return;
  let shown = document.getElementById("error");
  if (!shown) {
    shown = h("p", { id: "error", class: "note neg" });
    (view.firstElementChild || view).prepend(shown);
  }
  shown.textContent = `Could not load: ${error?.message || error}`;
}

async function route() {
  stop();
  stop = () => {};
  const mine = ++generation;
  if (!token.get()) return prompt();
  nav.hidden = false;
  const hash = decodeURIComponent(location.hash || "#/");
  for (const [pattern, page] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    // each visit draws into its own element: a page still loading after the user moved on
    // writes into a detached one, never over the next page
    const own = h("div", { class: "page" }, note("loading…"));
    view.replaceChildren(own);
    try {
      const cleanup = await page(own, match.slice(1).filter(Boolean), { setLive, fail });
      if (mine === generation) stop = cleanup || (() => {});
      else cleanup?.();
    } catch (error) {
      fail(error);
    }
    return;
  }
  view.replaceChildren(note("No such page."), h("a", { href: "#/" }, "Leaderboard"));
}

document.getElementById("logout").addEventListener("click", () => {
  token.clear();
  stop();
  prompt();
});
window.addEventListener("hashchange", route);
route();
