// The console API from the browser: the bearer token (sessionStorage, never a URL), the list of
// endpoints this server has (its /openapi.json, so an absent one is never requested) and GET.
const KEY = "aitrader.console.token";
export const PREFIX = "/api/v1";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value.trim()),
  clear: () => sessionStorage.removeItem(KEY),
};

export class Unauthorized extends Error {}

let paths = null;

/** The API's paths, e.g. "/accounts/{external_id}/equity" (without the /api/v1 prefix). */
export async function capabilities() {
  if (paths === null) {
    const answer = await fetch("/openapi.json");
    const doc = answer.ok ? await answer.json() : { paths: {} };
    paths = new Set(Object.keys(doc.paths || {}).map((p) => p.replace(PREFIX, "")));
  }
  return paths;
}

/** Whether the server has an endpoint; `template` uses any parameter name: "/accounts/{}/equity". */
export async function has(template) {
  const norm = (p) => p.replace(/\{[^}]*\}/g, "{}");
  for (const p of await capabilities()) if (norm(p) === norm(template)) return true;
  return false;
}

export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") query.set(k, v);
  const q = query.toString();
  return PREFIX + path + (q ? "?" + q : "");
}

export function headers() {
  return { Authorization: "Bearer " + token.get(), Accept: "application/json" };
}

/** GET one endpoint: its JSON, null on 404 (not available / not granted); throws otherwise. */
export async function get(path, params = {}, signal = undefined) {
  const answer = await fetch(url(path, params), { headers: headers(), signal });
  if (answer.status === 401) throw new Unauthorized("the token was refused");
  if (answer.status === 404) return null;
  if (!answer.ok) {
    let detail = answer.statusText;
    try {
      const body = await answer.json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch {
      /* not JSON */
    }
    throw new Error(`${answer.status}: ${detail}`);
  }
  return answer.json();
}

export const enc = encodeURIComponent;
