// popchain explorer: building blocks shared by every view — DOM helpers, one number format, units, links,
// tables, the JSON fetch. Every value from the API is inserted as text (textContent / createTextNode /
// setAttribute on our own attribute names), never as markup; links are built from our own paths with
// encoded segments.
"use strict";

export const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

export function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = String(v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    if (typeof kid === "object" && !(kid instanceof Node)) throw new TypeError("el(): a child must be a node or text");
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}
export function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) e.setAttribute(k, String(v));
  for (const kid of kids.flat(Infinity)) if (kid) e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return e;
}

// ------------------------------------------------------------------ formats (one for every page)
export const seg = (s) => encodeURIComponent(String(s));
export const num = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : (n ?? "–"));
export const grains = (n) => (typeof n === "number" ? `${num(n)} grains` : "–");
export const short = (h, n = 16) => (typeof h === "string" && h.length > n ? h.slice(0, n) + "…" : (h ?? "–"));
export const pct = (v, digits = 2) => (typeof v === "number" ? `${(100 * v).toFixed(digits)}%` : "–");
export const acc = (a) => (a ? `${pct(a.correct / a.n)} (${num(a.correct)}/${num(a.n)})` : "–");
export function when(ms) {   // local date and time, to the second: 2026-12-05 14:03:07
  if (!ms) return "–";
  const d = new Date(ms), p = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
export function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}
export const confirmations = (n) => (n > 0 ? `${num(n)} confirmation${n === 1 ? "" : "s"}` : "unconfirmed");

// ------------------------------------------------------------------ links
export const link = (path, text, attrs) => el("a", Object.assign({ href: path }, attrs || {}), text);
export const blockLink = (ref, text) => link(`/block/${seg(ref)}`, text ?? short(String(ref)), { class: "mono" });
export const roundLink = (r) => (r ? link(`/round/${seg(r)}`, `#${r}`) : "–");
export const taskLink = (id, name) => (id === null || id === undefined ? "–"
  : link(`/task/${seg(id)}`, name ? `${id} ${name}` : `task ${id}`, { class: "task" }));
export const addrLink = (a, kind = "account") => (a ? link(`/${kind}/${seg(a)}`, short(a, 20), { class: "mono", title: a }) : "–");
export const txLink = (txid) => link(`/tx/${seg(txid)}`, short(txid), { class: "mono" });
export const modelLink = (mh) => link(`/api/models/${seg(mh)}`, "download", { download: `${mh}.model` });

// ------------------------------------------------------------------ blocks of a page
export const badge = (status) => el("span", { class: `badge ${String(status).replace(/ /g, "-")}`, text: status });
export function kv(pairs) {
  return el("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v, id]) => [el("dt", { text: k }),
    el("dd", { id: id || null }, v ?? "–")]));
}
export function stat(label, value, id) {
  return el("div", { class: "stat" }, el("div", { class: "label", text: label }),
    el("div", { class: "value", id: id || null }, value ?? "–"));
}
export function table(headers, rows, attrs) {
  return el("table", attrs || {}, el("thead", {}, el("tr", {}, headers.map((h) =>
    el("th", { class: h.startsWith("#") ? "num" : null, text: h.replace(/^#/, "") })))),
    el("tbody", {}, rows));
}
export const td = (v, cls) => el("td", { class: cls || null }, v ?? "–");
export const note = (text, attrs) => el("p", Object.assign({ class: "note" }, attrs || {}), text);
export function filterBar(tasks, current, base) {   // "All tasks · 0 synthetic · 1 digits" as links (?task=)
  const q = (id) => (id === null ? base : `${base}?task=${seg(id)}`);
  return el("nav", { class: "filter", id: "task-filter" }, "Task: ",
    [link(q(null), "all", { class: current === null ? "on" : null }),
     tasks.map((t) => [" · ", link(q(t.task_id), `${t.task_id} ${t.name}`,
       { class: current === t.task_id ? "on" : null, "data-task": t.task_id })])]);
}
export function queryTask() {
  const t = new URLSearchParams(location.search).get("task");
  return t !== null && /^\d+$/.test(t) ? Number(t) : null;
}

// ------------------------------------------------------------------ the node's JSON API
export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}
export async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  if (!r.ok) {
    let err = { code: "http-error", message: r.statusText };
    try { err = (await r.json()).error || err; } catch (_) { /* not JSON */ }
    throw new ApiError(r.status, err.code, err.message);
  }
  return r.json();
}
