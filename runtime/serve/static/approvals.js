// What waits for a person: each call with its resolved arguments (what it would do, to
// judge) and buttons to approve or deny it. A decision goes to the journal with its
// reason; the server then goes on with the run.

import { api } from "./api.js";
import { fill, h, json, shortId, when } from "./dom.js";

const POLL_MS = 3000;

export function approvalsView(main) {
  let stopped = false;
  let timer = null;
  const list = h("div", { class: "approvals", id: "approvals" });
  const note = h("p", { class: "muted" });
  const done = h("ul", { class: "decided", id: "decided" });
  const noneDecided = h("p", { class: "muted" }, "Nothing decided from this page yet.");
  const cards = new Map(); // approval id -> its card, kept across polls (a reason being typed stays)

  fill(
    main,
    h(
      "section",
      { class: "card" },
      h("h2", null, "Waiting for approval"),
      h("p", { class: "muted" }, "Each call below waits for a person. Read the arguments it would run with, then approve or deny it; a denied step fails with policy_blocked and your reason."),
      list,
      note,
    ),
    h("section", { class: "card" }, h("h2", null, "Decided here"), noneDecided, done),
  );

  function card(item) {
    const id = String(item.id);
    const reason = h("input", { type: "text", name: "reason", placeholder: "reason (kept in the journal)", "aria-label": "reason" });
    const problem = h("p", { class: "error", hidden: true });
    const buttons = [];
    const decide = async (decision) => {
      buttons.forEach((b) => (b.disabled = true));
      problem.hidden = true;
      const body = { decision };
      if (reason.value.trim()) body.reason = reason.value.trim();
      try {
        await api(`/api/approvals/${encodeURIComponent(id)}`, { method: "POST", body });
        cards.delete(id);
        element.remove();
        noneDecided.hidden = true;
        done.prepend(
          h(
            "li",
            { dataset: { approval: id, decision } },
            h("span", { class: ["badge", decision === "approve" ? "state-succeeded" : "state-failed"] }, decision === "approve" ? "approved" : "denied"),
            " ",
            h("span", { class: "mono" }, String(item.step_id ?? "")),
            " of run ",
            h("a", { href: `#/runs/${encodeURIComponent(String(item.run_id))}`, class: "mono" }, shortId(item.run_id)),
            body.reason ? h("span", { class: "muted" }, ` — ${body.reason}`) : null,
          ),
        );
        window.dispatchEvent(new Event("dagentic:approvals-changed"));
        if (!cards.size) showEmpty();
      } catch (error) {
        problem.hidden = false;
        fill(problem, `Could not ${decision}: ${error.message}`);
        buttons.forEach((b) => (b.disabled = false));
      }
    };
    buttons.push(
      h("button", { type: "button", class: "approve", onclick: () => decide("approve") }, "Approve"),
      h("button", { type: "button", class: "deny danger", onclick: () => decide("deny") }, "Deny"),
    );
    const element = h(
      "article",
      { class: "approval", dataset: { approval: id, runId: String(item.run_id ?? ""), step: String(item.step_id ?? "") } },
      h(
        "header",
        null,
        h("strong", { class: "mono" }, String(item.step_id ?? "")),
        item.item !== undefined && item.item !== null ? h("span", { class: "muted" }, ` item ${item.item}`) : null,
        " ",
        h("span", { class: "mono tool" }, String(item.tool ?? "")),
        item.side_effects ? h("span", { class: ["effects", `effects-${String(item.side_effects).replace(/[^a-z]/g, "")}`], title: "what the call does" }, String(item.side_effects)) : null,
        item.plan ? ` of ${item.plan}` : "",
        " in run ",
        h("a", { href: `#/runs/${encodeURIComponent(String(item.run_id ?? ""))}`, class: "mono", title: String(item.run_id ?? "") }, shortId(item.run_id)),
        h("span", { class: "muted" }, item.asked_at ? ` · asked ${when(item.asked_at)}` : ""),
      ),
      item.reason_asked ? h("p", { class: "reason-asked" }, String(item.reason_asked)) : null,
      h("h4", null, "Arguments"),
      json(item.args ?? {}, { class: "json args" }),
      h("div", { class: "decide" }, reason, ...buttons),
      problem,
    );
    return element;
  }

  function showEmpty() {
    if (!list.querySelector("article")) fill(list, h("p", { class: "muted empty" }, "Nothing waits for approval."));
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const waiting = await api("/api/approvals");
      if (stopped) return;
      const items = Array.isArray(waiting) ? waiting : [];
      const ids = new Set(items.map((i) => String(i.id)));
      for (const [id, element] of cards) {
        if (!ids.has(id)) {
          element.remove();
          cards.delete(id);
        }
      }
      list.querySelector(".empty")?.remove();
      for (const item of items) {
        const id = String(item.id);
        if (!cards.has(id)) {
          const element = card(item);
          cards.set(id, element);
          list.append(element);
        }
      }
      showEmpty();
      fill(note, `Updated ${when(Date.now() / 1000)}.`);
    } catch (error) {
      if (!stopped) fill(note, h("span", { class: "error" }, `Could not list the approvals: ${error.message}`));
    }
    if (!stopped) timer = setTimeout(poll, document.hidden ? 15000 : POLL_MS);
  }
  poll();

  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
