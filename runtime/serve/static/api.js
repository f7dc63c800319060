// The HTTP API of `dagentic serve`, with the bearer token the page was opened with.
//
// `dagentic serve` prints http://HOST:PORT/?token=...; the page keeps the token in
// sessionStorage (this tab only) and takes it out of the address bar, so it is not left
// in the history or a bookmark, nor sent to anything as a Referer.

const KEY = "dagentic.token";

export function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token !== null) {
    if (token) sessionStorage.setItem(KEY, token);
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }
}

export function token() {
  return sessionStorage.getItem(KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

/** An error the API answered with: its HTTP status and body (JSON when it was). */
export class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function describe(status, body) {
  if (body && typeof body === "object") {
    if (Array.isArray(body.problems) && body.problems.length) {
      return body.problems.map(problemText).join("\n");
    }
    if (typeof body.detail === "string") return body.detail;
    if (typeof body.error === "string") return body.error;
    if (typeof body.message === "string") return body.message;
  }
  if (typeof body === "string" && body) return body.slice(0, 500);
  return `HTTP ${status}`;
}

export function problemText(problem) {
  if (!problem || typeof problem !== "object") return String(problem);
  const where = [problem.line, problem.column].filter((n) => n !== null && n !== undefined);
  return (where.length ? `${where.join(":")}: ` : "") + String(problem.message ?? "");
}

/** Listeners told when the API refuses the token (the page then asks for one). */
const onUnauthorized = new Set();
export function whenUnauthorized(listener) {
  onUnauthorized.add(listener);
}

/** Call the API: `api("/api/runs", {method: "POST", body: {...}})` → parsed JSON. */
export async function api(path, { method = "GET", body, query, signal } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const headers = { Accept: "application/json" };
  const auth = token();
  if (auth) headers.Authorization = `Bearer ${auth}`;
  const init = { method, headers, signal, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const text = await response.text();
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: kept as text
  }
  if (!response.ok) {
    // (a request sent before the token was changed says nothing of the new one)
    if (response.status === 401 && auth === token()) for (const listener of onUnauthorized) listener();
    throw new ApiError(response.status, data, describe(response.status, data));
  }
  return data;
}

/** The events of a run as Server-Sent Events. EventSource cannot send headers, so the
 * token goes in the query (the server accepts it there for this endpoint only). `after`
 * is the last sequence number seen: the stream goes on from there. */
export function runEvents(runId, after) {
  const url = new URL(`/api/runs/${encodeURIComponent(runId)}/events`, window.location.origin);
  const auth = token();
  if (auth) url.searchParams.set("token", auth);
  if (after !== undefined && after !== null) url.searchParams.set("after", after);
  return new EventSource(url);
}
