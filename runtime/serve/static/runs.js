// The runs list (polled, so statuses stay live), the form that starts a plan run, and the
// box that asks the agent a goal.

import { api, problemText } from "./api.js";
import { badge, fill, h, seconds, shortId, took, when } from "./dom.js";

const STATUSES = ["", "running", "waiting", "succeeded", "failed", "cancelled", "interrupted"];
const POLL_MS = 2000;

export function runsView(main) {
  let timer = null;
  let stopped = false;
  const filters = { status: "", plan: "" };

  // --- start a run ----------------------------------------------------------------------
  const planSelect = h("select", { name: "plan", id: "plan-select", "aria-label": "plan" });
  const planInfo = h("p", { class: "muted plan-description" });
  const inputsBox = h("div", { class: "inputs" });
  const startProblems = h("ul", { class: "problems", hidden: true });
  const startButton = h("button", { type: "submit", id: "start-run" }, "Start run");
  // A plan written here instead of one of the server's plan folders (validated by the
  // server exactly like a plan file; its problems come back with line and column).
  const BODY = ":body";
  const bodyText = h("textarea", {
    name: "plan_body",
    id: "plan-body",
    rows: 10,
    class: "mono",
    spellcheck: "false",
    placeholder: "version: 1\nname: my-plan\nsteps:\n  - id: hello\n    tool: notify.log\n    args: {message: hello}",
    "aria-label": "plan (YAML)",
  });
  const bodyInputs = h("textarea", { name: "plan_body_inputs", id: "plan-body-inputs", rows: 2, class: "mono", spellcheck: "false", placeholder: "{}", "aria-label": "inputs (JSON)" });
  const bodyBox = h(
    "div",
    { class: "plan-body", hidden: true },
    h("label", { class: "field" }, h("span", null, "Plan (YAML)"), bodyText),
    h("label", { class: "field" }, h("span", null, "Inputs ", h("small", { class: "muted" }, "JSON object")), bodyInputs),
  );
  let plans = [];
  let fields = [];

  function showPlan() {
    const body = planSelect.value === BODY;
    bodyBox.hidden = !body;
    inputsBox.hidden = body;
    if (body) {
      fill(planInfo, "Write a plan here: the server checks it as it checks plan files, and runs it with the tools its settings allow.");
      showProblems(startProblems, []);
      startButton.disabled = false;
      fields = [];
      return;
    }
    const plan = plans.find((p) => p.name === planSelect.value);
    fill(planInfo, plan ? plan.description || plan.path || "" : "");
    const invalid = plan && Array.isArray(plan.problems) ? plan.problems.map((p) => `${plan.path ?? plan.name}:${problemText(p)}`) : [];
    showProblems(startProblems, invalid);
    startButton.disabled = invalid.length > 0;
    fields = plan ? inputFields(plan.inputs || {}) : [];
    fill(inputsBox, fields.length ? fields.map((f) => f.row) : h("p", { class: "muted" }, "This plan takes no inputs."));
  }
  planSelect.addEventListener("change", showPlan);

  const startForm = h(
    "form",
    { class: "start-form", id: "start-form", onsubmit: (event) => start(event) },
    h("label", { class: "field" }, h("span", null, "Plan"), planSelect),
    planInfo,
    inputsBox,
    bodyBox,
    startProblems,
    h("div", { class: "actions" }, startButton),
  );

  async function start(event) {
    event.preventDefault();
    showProblems(startProblems, []);
    const inputs = {};
    const problems = [];
    for (const field of fields) {
      try {
        const value = field.read();
        if (value !== undefined) inputs[field.name] = value;
      } catch (error) {
        problems.push(`${field.name}: ${error.message}`);
      }
    }
    let request = { plan: planSelect.value, inputs };
    if (planSelect.value === BODY) {
      let given = {};
      try {
        given = bodyInputs.value.trim() ? JSON.parse(bodyInputs.value) : {};
        if (!given || typeof given !== "object" || Array.isArray(given)) throw new Error();
      } catch {
        problems.push("inputs: not a JSON object");
      }
      if (!bodyText.value.trim()) problems.push("write a plan first");
      request = { plan_body: bodyText.value, inputs: given };
    } else if (!planSelect.value) problems.push("choose a plan");
    if (problems.length) return showProblems(startProblems, problems);
    startButton.disabled = true;
    try {
      const answer = await api("/api/runs", { method: "POST", body: request });
      window.location.hash = `#/runs/${encodeURIComponent(answer.run_id)}`;
    } catch (error) {
      showProblems(startProblems, problemsOf(error));
    } finally {
      startButton.disabled = false;
    }
  }

  // --- ask ------------------------------------------------------------------------------
  const goal = h("textarea", {
    name: "goal",
    id: "ask-goal",
    rows: 3,
    placeholder: "Which region had the highest revenue in 2026Q3?",
    "aria-label": "goal",
  });
  const askProblems = h("ul", { class: "problems", hidden: true });
  const askButton = h("button", { type: "submit", id: "ask-button" }, "Ask");
  const askForm = h(
    "form",
    {
      class: "ask-form",
      onsubmit: async (event) => {
        event.preventDefault();
        showProblems(askProblems, []);
        if (!goal.value.trim()) return showProblems(askProblems, ["write a goal first"]);
        askButton.disabled = true;
        try {
          const answer = await api("/api/ask", { method: "POST", body: { goal: goal.value.trim() } });
          window.location.hash = `#/runs/${encodeURIComponent(answer.run_id)}`;
        } catch (error) {
          showProblems(askProblems, problemsOf(error));
        } finally {
          askButton.disabled = false;
        }
      },
    },
    h("p", { class: "muted" }, "A model plans the goal, runs the plan, checks its answer and replans on failure."),
    goal,
    askProblems,
    h("div", { class: "actions" }, askButton),
  );

  // --- the runs ---------------------------------------------------------------------------
  const statusFilter = h(
    "select",
    { name: "status", "aria-label": "status", onchange: () => ((filters.status = statusFilter.value), poll()) },
    STATUSES.map((s) => h("option", { value: s }, s || "any status")),
  );
  const planFilter = h("select", {
    name: "plan-filter",
    "aria-label": "plan filter",
    onchange: () => ((filters.plan = planFilter.value), poll()),
  });
  const tbody = h("tbody", { id: "runs-body" });
  const note = h("p", { class: "muted", id: "runs-note" });
  const table = h(
    "table",
    { class: "runs" },
    h("thead", null, h("tr", null, ["Run", "Plan / goal", "Status", "Started", "Took"].map((t) => h("th", null, t)))),
    tbody,
  );

  fill(
    main,
    h(
      "div",
      { class: "grid-2" },
      h("section", { class: "card" }, h("h2", null, "Start a run"), startForm),
      h("section", { class: "card" }, h("h2", null, "Ask"), askForm),
    ),
    h(
      "section",
      { class: "card" },
      h("div", { class: "card-head" }, h("h2", null, "Runs"), h("div", { class: "filters" }, statusFilter, planFilter)),
      h("div", { class: "scroll-x" }, table),
      note,
    ),
  );

  function drawRuns(runs) {
    const rows = runs.map((run) => {
      const live = run.status === "running";
      const id = String(run.run_id ?? "");
      return h(
        "tr",
        { dataset: { runId: id, status: String(run.status ?? "") } },
        h("td", null, h("a", { href: `#/runs/${encodeURIComponent(id)}`, class: "mono", title: id }, shortId(id))),
        h(
          "td",
          null,
          run.kind === "agent"
            ? h("span", { class: "goal" }, h("span", { class: "muted" }, "ask: "), run.goal ?? "")
            : [run.plan ?? "", run.parent_id ? h("span", { class: "muted" }, " (in an ask)") : null],
        ),
        h("td", null, badge(run.status)),
        h("td", null, when(run.started_at)),
        h("td", null, seconds(took(run.started_at, run.ended_at, live))),
      );
    });
    fill(tbody, rows.length ? rows : h("tr", null, h("td", { colspan: 5, class: "muted" }, "No runs yet: start one above.")));
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const runs = await api("/api/runs", { query: { ...filters, limit: 100 } });
      if (stopped) return;
      drawRuns(Array.isArray(runs) ? runs : []);
      fill(note, `Updated ${when(Date.now() / 1000)}; refreshed every ${POLL_MS / 1000} s.`);
    } catch (error) {
      if (stopped) return;
      fill(note, h("span", { class: "error" }, `Could not list the runs: ${error.message}`));
    }
    if (!stopped) timer = setTimeout(poll, document.hidden ? 10000 : POLL_MS);
  }

  (async () => {
    try {
      plans = await api("/api/plans");
      plans = Array.isArray(plans) ? plans : [];
    } catch (error) {
      showProblems(startProblems, [`Could not list the plans: ${error.message}`]);
      plans = [];
    }
    if (stopped) return;
    fill(
      planSelect,
      plans.length ? plans.map((p) => h("option", { value: p.name }, p.name)) : h("option", { value: "" }, "no plans found"),
      h("option", { value: BODY }, "a plan written here (YAML)…"),
    );
    fill(planFilter, h("option", { value: "" }, "any plan"), plans.map((p) => h("option", { value: p.name }, p.name)));
    showPlan();
  })();
  poll();

  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function problemsOf(error) {
  const body = error && error.body;
  if (body && Array.isArray(body.problems) && body.problems.length) return body.problems.map(problemText);
  return [error.message || String(error)];
}

function showProblems(list, problems) {
  fill(list, problems.map((p) => h("li", null, p)));
  list.hidden = !problems.length;
}

/** One field per input of a plan, by its type: {name, row, read()}. */
function inputFields(specs) {
  return Object.entries(specs).map(([name, spec]) => {
    spec = spec && typeof spec === "object" ? spec : {};
    const type = spec.type || "string";
    const has = spec.default !== undefined && spec.default !== null;
    const id = `input-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    let control;
    let read;
    if (Array.isArray(spec.enum) && spec.enum.length) {
      // one of the values the plan allows, each kept as the JSON value it is
      control = h(
        "select",
        { id, name },
        spec.required || has ? null : h("option", { value: "" }, "(default)"),
        spec.enum.map((value, i) => h("option", { value: String(i), selected: has && JSON.stringify(value) === JSON.stringify(spec.default) }, typeof value === "string" ? value : JSON.stringify(value))),
      );
      read = () => (control.value === "" ? undefined : spec.enum[Number(control.value)]);
    } else if (type === "boolean") {
      control = h("input", { type: "checkbox", id, name, checked: Boolean(spec.default) });
      read = () => control.checked;
    } else if (type === "integer" || type === "number") {
      control = h("input", { type: "number", id, name, step: type === "integer" ? 1 : "any", value: has ? String(spec.default) : "" });
      read = () => {
        if (control.value === "") {
          if (spec.required) throw new Error("required");
          return undefined;
        }
        const n = Number(control.value);
        if (!Number.isFinite(n) || (type === "integer" && !Number.isInteger(n))) throw new Error(`not ${type === "integer" ? "an integer" : "a number"}`);
        return n;
      };
    } else if (type === "string") {
      control = h("input", { type: "text", id, name, value: has ? String(spec.default) : "" });
      read = () => {
        if (control.value === "" && !has) {
          if (spec.required) throw new Error("required");
          return undefined;
        }
        return control.value;
      };
    } else {
      // array, object or anything else: JSON
      control = h("textarea", { id, name, rows: 2, class: "mono", spellcheck: "false" });
      control.value = has ? JSON.stringify(spec.default) : "";
      read = () => {
        if (control.value.trim() === "") {
          if (spec.required) throw new Error("required");
          return undefined;
        }
        try {
          return JSON.parse(control.value);
        } catch {
          throw new Error(`not valid JSON (${type})`);
        }
      };
    }
    const row = h(
      "label",
      { class: ["field", type === "boolean" && "field-check"], for: id },
      h("span", null, name, spec.required ? h("abbr", { title: "required" }, " *") : null, h("small", { class: "muted" }, ` ${type}`)),
      control,
      spec.description ? h("small", { class: "muted help" }, spec.description) : null,
    );
    return { name, row, read };
  });
}
