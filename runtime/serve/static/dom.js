// Building the page's elements. Everything the page shows came from outside (plan text,
// tool outputs, model text), so it goes in as text only: createElement, textContent and
// attributes, never markup parsed from data (no innerHTML, insertAdjacentHTML or the like).

const SVG = "http://www.w3.org/2000/svg";

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function apply(element, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") element.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key === "text") element.textContent = String(value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on")) {
      if (typeof value === "function") element.addEventListener(key.slice(2), value);
    } // never an inline handler from a string
    else if (key === "value" || key === "checked" || key === "disabled" || key === "selected") element[key] = value;
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  return element;
}

/** An HTML element: h("a", {href: "#/runs", class: "x"}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  return append(apply(document.createElement(tag), attrs), children);
}

/** An SVG element, the same way. */
export function s(tag, attrs, ...children) {
  return append(apply(document.createElementNS(SVG, tag), attrs), children);
}

/** Replace what `element` holds with `children`. */
export function fill(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

/** A JSON value as indented text, in a <pre>. */
export function json(value, attrs) {
  let text;
  if (typeof value === "string") text = value;
  else {
    try {
      text = JSON.stringify(value, null, 2);
    } catch {
      text = String(value);
    }
  }
  return h("pre", { class: "json", ...attrs }, text === undefined ? "" : text);
}

/** A status word as a coloured badge. */
export function badge(status) {
  const word = String(status || "unknown");
  return h("span", { class: ["badge", `state-${cssWord(word)}`] }, word);
}

/** A word safe in a class name (a status from the server is data too). */
export function cssWord(word) {
  return String(word).toLowerCase().replace(/[^a-z0-9_-]/g, "_");
}

/** A moment from the API (an ISO string, or seconds since the epoch) as a Date. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return new Date(value < 1e12 ? value * 1000 : value);
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function when(value) {
  const date = toDate(value);
  if (!date) return "";
  const now = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  if (date.toDateString() === now.toDateString()) return time;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}

export function seconds(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 100) return `${value.toFixed(2)} s`;
  if (value < 3600) return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  return `${(value / 3600).toFixed(1)} h`;
}

/** Seconds between two API moments (to now when `end` is missing and `live`). */
export function took(start, end, live = false) {
  const a = toDate(start);
  const b = toDate(end) || (live ? new Date() : null);
  return a && b ? Math.max(0, (b - a) / 1000) : null;
}

export function shortId(id) {
  const text = String(id || "");
  return text.length > 12 ? text.slice(0, 12) : text;
}

export function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
