// One run: the plan as a graph whose steps change colour as the run's events arrive
// (Server-Sent Events), the timeline with the critical path, failures, outputs, each
// step's output, and the trace on demand.

import { api, runEvents } from "./api.js";
import { badge, cssWord, fill, h, json, plural, seconds, shortId, toDate, took, when } from "./dom.js";
import { drawGraph } from "./graph.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const STEP_TERMINAL = new Set(["succeeded", "failed", "cancelled", "skipped"]);
const POLL_MS = 1500;

/** What a step is, by the journal's word for what happened to it (an event's `kind`,
 * with its `status` when it finished) or by a status the API gave. */
export function stepState(status, kind) {
  switch (kind) {
    case "scheduled":
      return "pending";
    case "started":
    case "attempt":
      return "running";
    case "reused":
      return "succeeded";
    case "skipped":
      return "skipped";
    case "finished":
      return status || "succeeded";
    default:
      break;
  }
  switch (status) {
    case "started":
    case "running":
    case "retrying":
      return "running";
    case "scheduled":
    case null:
    case undefined:
    case "":
      return "pending";
    default:
      return status;
  }
}

export function runView(main, runId) {
  let stopped = false;
  let source = null;
  let pollTimer = null;
  let tickTimer = null;
  let lastSeq = null;
  let run = null;
  let graph = null;
  let graphKey = "";
  let armed = false; // the cancel button was clicked once
  let armTimer = null;
  let cancelling = false;
  let selected = null;
  let drawPending = false;
  const steps = new Map(); // step id -> the step as last known

  const title = h("h1", { class: "run-title" }, "Run ", h("span", { class: "mono" }, shortId(runId)));
  const status = h("span", { id: "run-status" });
  const meta = h("p", { class: "muted run-meta" });
  const actions = h("div", { class: "actions" });
  const live = h("span", { class: "live muted", id: "live" });
  const graphBox = h("div", { class: "graph-wrap", id: "graph" }, h("p", { class: "muted" }, "Loading the plan…"));
  const detail = h("div", { class: "step-detail", id: "step-detail" });
  const timeline = h("div", { class: "timeline", id: "timeline" });
  const failures = h("section", { class: "card", id: "failures", hidden: true });
  const outputs = h("section", { class: "card", id: "outputs", hidden: true });
  const related = h("section", { class: "card", id: "related", hidden: true });
  const stepsBody = h("tbody", { id: "steps-body" });
  const usage = h("p", { class: "muted usage", id: "usage" });
  const error = h("p", { class: "error", hidden: true });
  const traceBox = h("div", { class: "trace" });
  const trace = h(
    "details",
    {
      class: "card",
      id: "trace",
      ontoggle: () => {
        if (trace.open) loadTrace();
      },
    },
    h("summary", null, h("h2", null, "Trace")),
    traceBox,
  );

  const planCard = h(
    "section",
    { class: "card", id: "plan-card" },
    h("div", { class: "card-head" }, h("h2", null, "Plan"), h("div", { class: "legend" }, legend())),
    graphBox,
    detail,
  );
  const timelineCard = h("section", { class: "card", id: "timeline-card" }, h("h2", null, "Timeline"), timeline);
  const stepsHead = h("h2", null, "Steps");
  const stepsTable = h(
    "div",
    { class: "scroll-x" },
    h(
      "table",
      { class: "steps" },
      h("thead", null, h("tr", null, ["Step", "Tool", "Status", "Attempts", "Took", "Output or error"].map((t) => h("th", null, t)))),
      stepsBody,
    ),
  );

  fill(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/runs" }, "← Runs")),
    h("section", { class: "card run-head" }, h("div", { class: "card-head" }, h("div", null, title, status, " ", live), actions), meta, error),
    related,
    planCard,
    timelineCard,
    failures,
    outputs,
    h(
      "section",
      { class: "card", id: "steps-card" },
      stepsHead,
      stepsTable,
      usage,
    ),
    trace,
  );

  // --- drawing ------------------------------------------------------------------------------

  function stepOf(id) {
    if (!steps.has(id)) steps.set(id, { id, status: "pending" });
    return steps.get(id);
  }

  function drawHead() {
    fill(status, badge(run.status));
    status.dataset.status = String(run.status ?? "");
    const name = run.kind === "agent" ? `ask: ${run.goal ?? ""}` : run.plan ?? "";
    fill(title, name ? `${name} ` : "Run ", h("span", { class: "mono muted", title: String(run.run_id ?? runId) }, shortId(run.run_id ?? runId)));
    const parts = [];
    if (run.started_at) parts.push(`started ${when(run.started_at)}`);
    const t = took(run.started_at, run.ended_at, run.status === "running");
    if (run.status === "waiting") parts.push(run.ended_at ? `waiting since ${when(run.ended_at)}` : "waiting");
    else if (run.status === "interrupted") parts.push("interrupted: the server goes on with it at its next start");
    else if (t !== null) parts.push(run.ended_at ? `took ${seconds(t)}` : `running for ${seconds(t)}`);
    const counts = {};
    for (const step of steps.values()) counts[step.status] = (counts[step.status] || 0) + 1;
    parts.push(Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", "));
    fill(meta, run.kind !== "agent" && run.goal ? h("span", { class: "goal" }, run.goal, h("br")) : null, parts.filter(Boolean).join(" · "));
    fill(
      actions,
      !TERMINAL.has(run.status)
        ? h(
            "button",
            { type: "button", class: ["danger", armed && "armed"], id: "cancel-run", onclick: cancel, disabled: cancelling },
            cancelling ? "Cancelling…" : armed ? "Click again to cancel" : "Cancel run",
          )
        : null,
      run.status === "waiting" ? h("a", { href: "#/approvals", class: "button" }, "Approvals") : null,
    );
  }

  function drawGraphBox() {
    const planGraph = run.plan_graph && Array.isArray(run.plan_graph.nodes) && run.plan_graph.nodes.length
      ? run.plan_graph
      : { nodes: [...steps.values()].map((s) => ({ id: s.id, tool: s.tool })), edges: dependencyEdges() };
    if (!planGraph.nodes.length) {
      fill(graphBox, h("p", { class: "muted" }, run.kind === "agent" ? "An agent run: each plan it makes runs as a plan run of its own, listed above with its graph." : "This run has no steps."));
      graph = null;
      return;
    }
    const key = JSON.stringify([planGraph.nodes.map((n) => [n.id, n.tool]), planGraph.edges]);
    if (graph && key === graphKey && graphBox.contains(graph.svg)) {
      graph.update({ critical: criticalPath(), selected });
      return;
    }
    graphKey = key;
    graph = drawGraph(planGraph, {
      state: (id) => (steps.get(id) || {}).status,
      critical: criticalPath(),
      selected,
      onSelect: (id) => {
        selected = selected === id ? null : id;
        graph.update({ selected });
        drawDetail();
      },
    });
    fill(graphBox, graph.svg);
  }

  function dependencyEdges() {
    const edges = [];
    for (const step of steps.values()) for (const dep of step.depends_on || []) edges.push([dep, step.id]);
    return edges;
  }

  function criticalPath() {
    return run && run.status !== "running" && Array.isArray(run.critical_path) ? run.critical_path.map(String) : [];
  }

  function drawDetail() {
    const step = selected ? steps.get(selected) : null;
    if (!step) {
      fill(detail, h("p", { class: "muted" }, "Select a step in the graph to see its output."));
      return;
    }
    fill(
      detail,
      h("h3", null, step.id, " ", badge(step.status)),
      h(
        "dl",
        { class: "facts" },
        fact("tool", step.tool ?? "check"),
        fact("attempts", step.attempts ?? ""),
        fact("started", when(step.started_at)),
        fact("took", seconds(took(step.started_at, step.ended_at, step.status === "running"))),
        fact("needs", (step.depends_on || []).join(", ") || "nothing"),
      ),
      step.error ? errorBlock(step.error) : null,
      step.output !== undefined && step.output !== null ? [h("h4", null, "Output"), json(step.output, { class: "json output" })] : null,
    );
  }

  function drawTimeline() {
    const rows = [...steps.values()].filter((s) => toDate(s.started_at));
    if (!rows.length) {
      fill(timeline, h("p", { class: "muted" }, "No step has started yet."));
      return;
    }
    const now = new Date();
    const t0 = Math.min(...rows.map((s) => toDate(s.started_at).getTime()));
    const t1 = Math.max(...rows.map((s) => (toDate(s.ended_at) || now).getTime()), t0 + 1);
    const span = t1 - t0;
    rows.sort((a, b) => toDate(a.started_at) - toDate(b.started_at));
    const path = criticalPath();
    const onPath = new Set(path);
    const pathTotal = path.reduce((sum, id) => sum + (took(stepOf(id).started_at, stepOf(id).ended_at) || 0), 0);
    fill(
      timeline,
      path.length
        ? h(
            "p",
            { class: "critical-path", id: "critical-path" },
            h("strong", null, "Critical path: "),
            path.map((id, i) => [i ? " → " : "", h("span", { class: "mono" }, id)]),
            ` = ${seconds(pathTotal)}`,
            run.started_at && run.ended_at ? ` (the run took ${seconds(took(run.started_at, run.ended_at))})` : "",
          )
        : null,
      h(
        "div",
        { class: "gantt", role: "table", "aria-label": "timeline" },
        h("div", { class: "gantt-row gantt-axis", role: "row" }, h("span", null, ""), h("span", { class: "axis" }, h("span", null, "0 s"), h("span", null, seconds(span / 1000))), h("span", null, "")),
        rows.map((step) => {
          const a = toDate(step.started_at).getTime() - t0;
          const b = (toDate(step.ended_at) || now).getTime() - t0;
          const bar = h("span", { class: ["bar", `state-${cssWord(step.status)}`] });
          bar.style.left = `${(100 * a) / span}%`;
          bar.style.width = `${Math.max(0.4, (100 * (b - a)) / span)}%`;
          return h(
            "div",
            { class: ["gantt-row", onPath.has(step.id) && "critical"], role: "row", dataset: { step: step.id } },
            h("span", { class: "label mono", title: step.id }, step.id),
            h("span", { class: "track" }, bar),
            h("span", { class: "took" }, seconds((b - a) / 1000)),
          );
        }),
      ),
    );
  }

  function drawSteps() {
    const rows = [...steps.values()].map((step) => {
      let shown = null;
      if (step.error) shown = errorBlock(step.error);
      else if (step.output !== undefined && step.output !== null) shown = json(step.output, { class: "json output" });
      return h(
        "tr",
        { dataset: { step: step.id, status: String(step.status ?? "") } },
        h("td", { class: "mono" }, step.id),
        h("td", { class: "mono" }, step.tool ?? "check"),
        h("td", null, badge(step.status)),
        h("td", null, step.attempts ?? ""),
        h("td", null, seconds(took(step.started_at, step.ended_at, step.status === "running"))),
        h("td", { class: "cell-output" }, shown),
      );
    });
    fill(stepsBody, rows.length ? rows : h("tr", null, h("td", { colspan: 6, class: "muted" }, "No steps.")));
    const u = run.usage;
    if (u && typeof u === "object" && Object.keys(u).length) {
      const shown = (k, v) => (k === "wall_time" ? seconds(Number(v)) : k === "cost" ? `$${Number(v).toFixed(4)}` : String(v));
      fill(usage, "Usage: ", Object.entries(u).map(([k, v], i) => [i ? ", " : "", `${k.replaceAll("_", " ")} ${shown(k, v)}`]));
    } else fill(usage, "");
  }

  function drawFailures() {
    const list = [];
    const seen = new Set();
    for (const f of Array.isArray(run.failures) ? run.failures : []) {
      const key = `${f.step_id ?? f.step ?? ""}\u0000${f.failure_mode ?? ""}`;
      seen.add(key);
      list.push(f);
    }
    const skipped = [];
    for (const step of steps.values()) {
      if (!step.error) continue;
      const key = `${step.id}\u0000${step.error.failure_mode ?? ""}`;
      if (seen.has(key)) continue;
      if (step.status === "skipped") skipped.push(step.id);
      else list.push({ step_id: step.id, tool: step.tool, ...step.error });
    }
    failures.hidden = !list.length && !skipped.length;
    if (failures.hidden) return;
    fill(
      failures,
      h("h2", null, `Failures (${list.length})`),
      h(
        "ul",
        { class: "failures" },
        list.map((f) =>
          h(
            "li",
            null,
            h("span", { class: "mono" }, String(f.step_id ?? f.step ?? f.span ?? "run")),
            f.tool ? h("span", { class: "muted" }, ` (${f.tool})`) : null,
            " ",
            h("span", { class: "mode" }, String(f.failure_mode ?? "unknown")),
            h("div", { class: "message" }, String(f.message ?? "")),
          ),
        ),
      ),
      skipped.length
        ? h("p", { class: "muted skipped" }, `Skipped because a step before them failed (upstream_failed): ${skipped.join(", ")}`)
        : null,
    );
  }

  /** What an agent run adds (its answer, plan versions and plan runs), a plan run's agent,
   * and the calls that wait for a decision. */
  function drawRelated() {
    const parts = [];
    if (run.parent_id) {
      parts.push(h("p", null, "Part of agent run ", h("a", { href: `#/runs/${encodeURIComponent(String(run.parent_id))}`, class: "mono" }, shortId(run.parent_id)), "."));
    }
    const waiting = Array.isArray(run.approvals) ? run.approvals : [];
    if (waiting.length) {
      parts.push(
        h("p", null, `${plural(waiting.length, "call")} of this run ${waiting.length === 1 ? "waits" : "wait"} for a person's decision:`),
        h(
          "ul",
          { class: "waiting" },
          waiting.map((a) => h("li", null, h("span", { class: "mono" }, String(a.step_id ?? "")), " ", h("span", { class: "muted" }, `(${a.tool ?? ""})`), a.reason_asked ? ` — ${a.reason_asked}` : "")),
        ),
        h("p", null, h("a", { href: "#/approvals", class: "button", id: "to-approvals" }, "Decide on the approvals page")),
      );
    }
    if (run.kind === "agent") {
      if (run.answer !== undefined && run.answer !== null) parts.push(h("h3", null, "Answer"), json(run.answer, { class: "json output answer" }));
      const children = Array.isArray(run.runs) ? run.runs : [];
      parts.push(h("h3", null, `Plan runs (${children.length})`));
      parts.push(
        children.length
          ? h(
              "ul",
              { class: "children" },
              children.map((c) => h("li", null, h("a", { href: `#/runs/${encodeURIComponent(String(c.run_id))}`, class: "mono" }, shortId(c.run_id)), " ", String(c.plan ?? ""), " ", badge(c.status))),
            )
          : h("p", { class: "muted" }, "No plan has run yet."),
      );
      const plans = Array.isArray(run.plans) ? run.plans : [];
      if (plans.length) {
        parts.push(
          h(
            "details",
            null,
            h("summary", null, `Plans the model made (${plans.length})`),
            plans.map((p, i) => [h("h4", null, `version ${p.version ?? i + 1}`), json(p, { class: "json" })]),
          ),
        );
      }
    }
    related.hidden = !parts.length;
    fill(related, h("h2", null, run.kind === "agent" ? "Agent run" : waiting.length ? "Waiting" : "Part of an agent run"), parts);
  }

  function drawOutputs() {
    const out = run.outputs;
    const has = out !== undefined && out !== null && !(typeof out === "object" && !Array.isArray(out) && !Object.keys(out).length);
    outputs.hidden = !has;
    if (!has) return;
    fill(
      outputs,
      h("h2", null, run.kind === "agent" ? "Answer and outputs" : "Outputs"),
      typeof out === "object" && !Array.isArray(out)
        ? h("dl", { class: "outputs" }, Object.entries(out).map(([k, v]) => [h("dt", { class: "mono" }, k), h("dd", null, json(v, { class: "json output" }))]))
        : json(out, { class: "json output" }),
    );
  }

  function drawAll() {
    // An agent run's steps are those of its plan runs, each on its own page.
    const agent = run.kind === "agent";
    planCard.hidden = timelineCard.hidden = stepsTable.hidden = agent;
    fill(stepsHead, agent ? "Usage" : "Steps");
    drawHead();
    drawGraphBox();
    drawDetail();
    drawTimeline();
    drawSteps();
    drawFailures();
    drawOutputs();
    drawRelated();
  }

  /** After an event: the graph's classes at once, the rest at the next frame. */
  function drawLive() {
    if (graph) graph.update({ selected });
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      if (stopped) return;
      drawHead();
      drawTimeline();
      drawSteps();
      if (selected) drawDetail();
    });
  }

  // --- data ----------------------------------------------------------------------------------

  function take(detail) {
    run = detail;
    for (const step of Array.isArray(detail.steps) ? detail.steps : []) {
      const id = String(step.id);
      let status = stepState(step.status);
      if (status === "pending" && step.started_at && !step.ended_at) status = "running";
      steps.set(id, { ...stepOf(id), ...step, id, status });
    }
  }

  async function load() {
    try {
      take(await api(`/api/runs/${encodeURIComponent(runId)}`));
    } catch (e) {
      error.hidden = false;
      fill(error, e.status === 404 ? `No run ${runId} in the journal.` : `Could not load the run: ${e.message}`);
      return false;
    }
    error.hidden = true;
    return true;
  }

  function onStep(event) {
    if (event.lastEventId) lastSeq = event.lastEventId;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!data || data.step_id === undefined || data.step_id === null) return;
    const step = stepOf(String(data.step_id));
    let state;
    if (data.kind === "item_finished") {
      // how one foreach item went: the step runs until its own `finished`
      state = STEP_TERMINAL.has(step.status) || step.status === "waiting" ? step.status : "running";
    } else state = stepState(data.status, data.kind);
    step.status = state;
    if (data.attempt !== undefined && data.attempt !== null) step.attempts = Math.max(step.attempts || 0, data.attempt);
    if (state === "running" && !step.started_at) step.started_at = data.at;
    if (STEP_TERMINAL.has(step.status) && data.at) {
      step.ended_at = data.at;
      step.started_at ||= data.at;
    }
    if (data.error && data.kind !== "item_finished") step.error = data.error;
    if (state === "running" && !TERMINAL.has(run.status)) run.status = "running";
    drawLive();
    if (STEP_TERMINAL.has(state) || state === "waiting") reloadSoon(); // its output
  }

  /** A run event: it waits, was interrupted, or ended (then the stream ends too). */
  async function onRun(event) {
    let data = {};
    try {
      data = JSON.parse(event.data) || {};
    } catch {
      // a run event that is not JSON still says something changed
    }
    if (TERMINAL.has(data.status)) closeStream();
    await refresh();
  }

  /** An agent run's record (a plan made, a model called, the answer): reload the run. */
  function onRecord(event) {
    if (event.lastEventId) lastSeq = event.lastEventId;
    reloadSoon();
  }

  /** Reload the run's detail (outputs, a new plan) at most every half second. */
  let reloadTimer = null;
  function reloadSoon() {
    if (reloadTimer) return;
    reloadTimer = setTimeout(async () => {
      reloadTimer = null;
      if (stopped || !(await load()) || stopped) return;
      if (TERMINAL.has(run.status)) return refresh();
      drawGraphBox();
      drawLive();
      drawFailures();
      drawOutputs();
      drawRelated();
    }, 500);
  }

  function closeStream() {
    if (source) {
      source.close();
      source = null;
    }
  }

  function follow() {
    if (stopped || source) return;
    live.classList.add("on");
    source = runEvents(runId, lastSeq);
    source.addEventListener("step", onStep);
    source.addEventListener("run", onRun);
    source.addEventListener("record", onRecord);
    source.addEventListener("error", () => {
      // EventSource reconnects by itself (with Last-Event-ID) unless the server refused
      // the stream; then the page polls instead.
      if (source && source.readyState === EventSource.CLOSED) {
        closeStream();
        schedulePoll();
      }
    });
  }

  function schedulePoll(ms = POLL_MS) {
    clearTimeout(pollTimer);
    if (!stopped) pollTimer = setTimeout(refresh, ms);
  }

  /** Reload the run; follow its events while it runs, poll while it waits. */
  async function refresh() {
    clearTimeout(pollTimer);
    const ok = await load();
    if (stopped) return;
    if (!ok) return schedulePoll(POLL_MS * 2);
    drawAll();
    if (TERMINAL.has(run.status)) {
      closeStream();
      fill(live, "");
      live.classList.remove("on");
      if (trace.open) loadTrace();
      return;
    }
    // running, waiting for a person or interrupted: the stream tells when it goes on
    follow();
    fill(live, run.status === "running" ? "● live" : run.status === "waiting" ? "● waiting for approval" : `● ${run.status}`);
  }

  /** Cancel in two clicks (the first arms the button for a few seconds): no dialog. */
  async function cancel() {
    if (!armed) {
      armed = true;
      clearTimeout(armTimer);
      armTimer = setTimeout(() => {
        armed = false;
        if (!stopped && run) drawHead();
      }, 4000);
      drawHead();
      return;
    }
    armed = false;
    cancelling = true;
    drawHead();
    try {
      await api(`/api/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" });
    } catch (e) {
      error.hidden = false;
      fill(error, `Could not cancel: ${e.message}`);
    }
    cancelling = false;
    refresh();
  }

  async function loadTrace() {
    fill(traceBox, h("p", { class: "muted" }, "Loading the trace…"));
    try {
      const data = await api(`/api/runs/${encodeURIComponent(runId)}/trace`);
      if (!stopped) fill(traceBox, renderTrace(data));
    } catch (e) {
      fill(traceBox, h("p", { class: e.status === 404 ? "muted" : "error" }, e.status === 404 ? "No trace for this run yet (it is written when the run ends)." : `Could not load the trace: ${e.message}`));
    }
  }

  refresh();
  tickTimer = setInterval(() => {
    if (run && run.status === "running" && !drawPending) {
      drawHead();
      drawTimeline();
    }
  }, 1000);

  return () => {
    stopped = true;
    closeStream();
    clearTimeout(pollTimer);
    clearTimeout(reloadTimer);
    clearTimeout(armTimer);
    clearInterval(tickTimer);
  };
}

function fact(name, value) {
  return [h("dt", null, name), h("dd", null, String(value ?? ""))];
}

function errorBlock(error) {
  return h(
    "div",
    { class: "error-block" },
    h("span", { class: "mode" }, String(error.failure_mode ?? "error")),
    " ",
    h("span", { class: "message" }, String(error.message ?? "")),
  );
}

function legend() {
  return ["pending", "running", "waiting", "succeeded", "failed", "skipped", "cancelled"].map((s) =>
    h("span", { class: ["key", `state-${s}`] }, s),
  );
}

/** The `dagentic trace --json` summary: header, timeline of spans, critical paths,
 * estimates, failures and usage. */
export function renderTrace(data) {
  if (!data || typeof data !== "object") return h("p", { class: "muted" }, "No trace.");
  const root = data.root || {};
  const axis = Number(data.axis) || 0;
  const rows = Array.isArray(data.timeline) ? data.timeline : [];
  const part = [];
  part.push(
    h(
      "p",
      null,
      h("strong", null, `${root.kind ?? "run"} ${String(root.name ?? "").replace(/^run /, "")} `),
      badge(root.status),
      ` in ${seconds(Number(root.wall_time) || 0)}`,
    ),
  );
  if (root.message) part.push(h("p", { class: "error" }, `${root.failure_mode ? `${root.failure_mode}: ` : ""}${root.message}`));
  part.push(
    h(
      "div",
      { class: "gantt trace-gantt" },
      rows.map((row) => {
        const bar = h("span", { class: ["bar", `state-${cssWord(row.status)}`, `kind-${cssWord(row.kind)}`] });
        const a = Number(row.start) || 0;
        const b = Number(row.end) || a;
        bar.style.left = `${axis ? (100 * a) / axis : 0}%`;
        bar.style.width = `${Math.max(0.4, axis ? (100 * (b - a)) / axis : 100)}%`;
        const label = h("span", { class: "label mono", title: `${row.label ?? ""} ${row.detail ?? ""}` }, String(row.label ?? ""));
        label.style.paddingLeft = `${Math.min(6, Number(row.depth) || 0) * 0.8}em`;
        return h(
          "div",
          { class: ["gantt-row", `kind-${cssWord(row.kind)}`] },
          label,
          h("span", { class: "track" }, bar),
          h("span", { class: "took" }, seconds(Number(row.duration) || 0)),
          h("span", { class: "note muted" }, [row.detail, row.failure_mode, row.attempts > 1 ? `${row.attempts} attempts` : null, row.items ? plural(row.items, "item") : null].filter(Boolean).join(" · ")),
        );
      }),
    ),
  );
  for (const path of Array.isArray(data.critical_paths) ? data.critical_paths : []) {
    const chain = (path.steps || []).map((p) => `${p.step_id} ${seconds(Number(p.duration) || 0)}`).join(" → ");
    part.push(h("p", { class: "critical-path" }, h("strong", null, `Critical path${path.run ? ` of ${path.run}` : ""}: `), `${chain} = ${seconds(Number(path.total) || 0)}`));
  }
  for (const e of Array.isArray(data.estimates) ? data.estimates : []) {
    part.push(h("p", null, h("strong", null, "Estimate: "), `p50 ${seconds(Number(e.wall_p50) || 0)}${e.wall_p90 != null ? `, p90 ${seconds(Number(e.wall_p90))}` : ""}; the run took ${seconds(Number(e.actual) || 0)}`));
  }
  const fails = [...(Array.isArray(data.failures) ? data.failures : []), ...(Array.isArray(data.upstream_failed) ? data.upstream_failed : [])];
  if (fails.length) {
    part.push(h("h3", null, "Failures"), h("ul", { class: "failures" }, fails.map((f) => h("li", null, h("span", { class: "mono" }, String(f.step_id ?? f.span ?? "")), " ", h("span", { class: "mode" }, String(f.failure_mode ?? "")), h("div", { class: "message" }, String(f.message ?? ""))))));
  }
  const u = data.usage;
  if (u && typeof u === "object") {
    part.push(h("p", { class: "muted" }, `Usage: ${plural(u.steps ?? 0, "step")}, ${plural(u.model_calls ?? 0, "model call")}, ${u.input_tokens ?? 0} input + ${u.output_tokens ?? 0} output tokens, $${Number(u.cost ?? 0).toFixed(4)}, ${seconds(Number(u.wall_time) || 0)} wall time`));
  }
  return part;
}
