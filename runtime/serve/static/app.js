// The page's shell: the token, the navigation and the views, routed by the address's
// hash (#/runs, #/runs/RUN_ID, #/approvals, #/report).

import { api, setToken, takeTokenFromUrl, token, whenUnauthorized } from "./api.js";
import { approvalsView } from "./approvals.js";
import { fill, h } from "./dom.js";
import { reportView } from "./report.js";
import { runView } from "./run.js";
import { runsView } from "./runs.js";

takeTokenFromUrl();

const main = document.getElementById("main");
const banner = document.getElementById("banner");
let leave = null; // what the current view does when it is left (stop polls, close streams)

const routes = [
  [/^#?\/?$/, () => runsView],
  [/^#\/runs\/?$/, () => runsView],
  [/^#\/runs\/(.+)$/, () => runView],
  [/^#\/approvals\/?$/, () => approvalsView],
  [/^#\/report\/?$/, () => reportView],
];

function route() {
  if (leave) {
    leave();
    leave = null;
  }
  const hash = window.location.hash || "#/runs";
  let view = null;
  let params = [];
  for (const [pattern, pick] of routes) {
    const match = hash.match(pattern);
    if (match) {
      view = pick();
      params = match.slice(1).map((part) => decodeURIComponent(part));
      break;
    }
  }
  for (const link of document.querySelectorAll("nav.top a[data-view]")) {
    const active = hash.startsWith(link.getAttribute("href")) || (hash === "#/runs" && link.dataset.view === "runs");
    link.classList.toggle("active", active);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!view) {
    fill(main, h("section", { class: "card" }, h("h1", null, "Not found"), h("p", null, h("a", { href: "#/runs" }, "Back to the runs"))));
    return;
  }
  main.replaceChildren();
  leave = view(main, ...params) || null;
  window.scrollTo(0, 0);
}

/** The token form, shown when there is none or the API refused it. */
function askForToken(refused) {
  const input = h("input", {
    type: "password",
    name: "token",
    autocomplete: "off",
    placeholder: "the token `dagentic serve` printed",
    "aria-label": "token",
  });
  const form = h(
    "form",
    {
      class: "token-form",
      onsubmit: (event) => {
        event.preventDefault();
        setToken(input.value.trim());
        banner.hidden = true;
        banner.replaceChildren();
        route();
        pollApprovals();
      },
    },
    h(
      "span",
      null,
      refused
        ? "The server refused this page's token. Open the address `dagentic serve` printed, or paste its token: "
        : "This page needs the token `dagentic serve` printed (open the address it printed, with ?token=...), or paste it: ",
    ),
    input,
    h("button", { type: "submit" }, "Use token"),
  );
  fill(banner, form);
  banner.hidden = false;
}

let asked = false;
whenUnauthorized(() => {
  if (asked && !banner.hidden) return;
  asked = true;
  askForToken(Boolean(token()));
});

/** The number of waiting approvals, on the navigation's link. */
let approvalsTimer = null;
async function pollApprovals() {
  clearTimeout(approvalsTimer);
  const count = document.getElementById("approvals-count");
  try {
    const waiting = await api("/api/approvals");
    const n = Array.isArray(waiting) ? waiting.length : 0;
    count.textContent = n ? String(n) : "";
    count.hidden = !n;
  } catch {
    count.hidden = true;
  }
  approvalsTimer = setTimeout(pollApprovals, document.hidden ? 15000 : 4000);
}

window.addEventListener("hashchange", route);
window.addEventListener("dagentic:approvals-changed", () => pollApprovals());
if (!token()) askForToken(false);
route();
pollApprovals();
