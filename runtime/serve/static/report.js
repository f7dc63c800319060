// The failure modes and step latencies over many runs (`dagentic report`).

import { api } from "./api.js";
import { badge, fill, h, plural, seconds, shortId, when } from "./dom.js";

const SINCE = [
  ["1h", "the last hour"],
  ["1d", "the last day"],
  ["7d", "the last week"],
  ["30d", "the last 30 days"],
  ["", "all time"],
];

export function reportView(main) {
  let stopped = false;
  const since = h(
    "select",
    { name: "since", "aria-label": "since", onchange: () => load() },
    SINCE.map(([value, label]) => h("option", { value, selected: value === "1d" }, label)),
  );
  const body = h("div", { id: "report" }, h("p", { class: "muted" }, "Loading…"));
  fill(
    main,
    h(
      "section",
      { class: "card" },
      h("div", { class: "card-head" }, h("h2", null, "Failure modes and latencies across runs"), h("label", { class: "inline" }, "Since ", since)),
      body,
    ),
  );

  async function load() {
    try {
      const data = await api("/api/report", { query: { since: since.value } });
      if (!stopped) fill(body, renderReport(data));
    } catch (error) {
      if (!stopped) fill(body, h("p", { class: "error" }, `Could not load the report: ${error.message}`));
    }
  }
  load();
  return () => {
    stopped = true;
  };
}

function table(headers, rows, attrs) {
  return h(
    "div",
    { class: "scroll-x" },
    h("table", attrs, h("thead", null, h("tr", null, headers.map((t) => h("th", null, t)))), h("tbody", null, rows)),
  );
}

export function renderReport(data) {
  if (!data || typeof data !== "object") return h("p", { class: "muted" }, "No report.");
  const runs = Number(data.runs) || 0;
  const kinds = Object.entries(data.by_kind || {}).map(([k, n]) => `${n} ${k}`).join(", ");
  const parts = [h("p", null, h("strong", null, plural(runs, "run")), kinds ? ` (${kinds})` : "", data.since ? ` since ${when(data.since)}` : "")];
  if (!runs) {
    parts.push(h("p", { class: "muted" }, "No runs in this period."));
    return parts;
  }
  parts.push(
    h("h3", null, "Runs by status"),
    h("p", { class: "statuses" }, Object.entries(data.by_status || {}).map(([status, n]) => h("span", { class: "status-count" }, badge(status), ` ${n}`))),
  );
  const modes = Array.isArray(data.failure_modes) ? data.failure_modes : [];
  parts.push(h("h3", null, "Failure modes"));
  if (!modes.length) parts.push(h("p", { class: "muted" }, "No failures."));
  else {
    const most = Math.max(...modes.map((m) => Number(m.count) || 0), 1);
    parts.push(
      table(
        ["Failure mode", "Count", "", "Example step", "Message", "Run"],
        modes.map((m) => {
          const example = m.example || {};
          const bar = h("span", { class: "hbar" });
          bar.style.width = `${(100 * (Number(m.count) || 0)) / most}%`;
          return h(
            "tr",
            { dataset: { mode: String(m.mode ?? "") } },
            h("td", null, h("span", { class: "mode" }, String(m.mode ?? ""))),
            h("td", { class: "num" }, String(m.count ?? "")),
            h("td", { class: "bar-cell" }, bar),
            h("td", { class: "mono" }, String(example.step ?? "")),
            h("td", { class: "message" }, String(example.message ?? "")),
            h("td", null, example.run_id ? h("a", { href: `#/runs/${encodeURIComponent(String(example.run_id))}`, class: "mono" }, shortId(example.run_id)) : ""),
          );
        }),
        { class: "report-modes" },
      ),
    );
  }
  const tools = Array.isArray(data.tools) ? data.tools : [];
  if (tools.length) {
    parts.push(
      h("h3", null, "Step latency by tool"),
      table(
        ["Tool", "Steps", "p50", "p95", "Max", "Failed"],
        tools.map((t) =>
          h(
            "tr",
            null,
            h("td", { class: "mono" }, String(t.tool ?? "")),
            h("td", { class: "num" }, String(t.count ?? "")),
            h("td", { class: "num" }, seconds(Number(t.p50))),
            h("td", { class: "num" }, seconds(Number(t.p95))),
            h("td", { class: "num" }, seconds(Number(t.max))),
            h("td", { class: ["num", t.failures && "error"] }, String(t.failures ?? 0)),
          ),
        ),
        { class: "report-tools" },
      ),
    );
  }
  return parts;
}
