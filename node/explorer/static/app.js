// popchain explorer: the router. Each URL renders one view from this node's JSON API; the page then follows
// the node's event stream (live.js) and re-renders on the events its view cares about. ``?static=1`` renders
// once and never opens the stream (screenshots, printing): main[data-rendered] marks a finished render.
"use strict";
import { $, el, api, ApiError, link, note } from "./ui.js";
import { live, connect, paintLive } from "./live.js";
import { overview, block, tx, account, peers } from "./views_chain.js";
import { leaderboard, tasks, task, round, miner } from "./views_compete.js";

const ALL = ["tip", "round", "beacon", "verdict", "mempool", "reset"];
const ROUTES = [
  [/^\/$/, overview, ALL],
  [/^\/leaderboard$/, leaderboard, ["verdict", "beacon", "reset"]],
  [/^\/tasks$/, tasks, ["verdict", "beacon", "round", "reset"]],
  [/^\/task\/(\d+)$/, task, ["verdict", "beacon", "round", "reset"]],
  [/^\/peers$/, peers, ["tip", "reset"]],
  [/^\/round\/(\d+)$/, round, ["round", "beacon", "verdict", "tip", "reset"]],
  [/^\/block\/([^/]+)$/, block, ["tip", "verdict", "reset"]],
  [/^\/tx\/([^/]+)$/, tx, ["tip", "mempool", "reset"]],
  [/^\/account\/([^/]+)$/, account, ["tip", "mempool", "reset"]],
  [/^\/miner\/([^/]+)$/, miner, ["verdict", "reset"]],
];
let current = null, busy = false, again = false, timer = null;

function notFound(text) {
  return el("section", { class: "notfound" }, el("h1", { text: "Not found" }), el("p", { text }),
    el("p", {}, link("/", "Back to the overview")));
}
async function render() {
  const main = $("main");
  if (!current) return;
  if (busy) { again = true; return; }
  busy = true;
  try {
    const node = await current.view(...current.args);
    main.replaceChildren(node);
  } catch (e) {
    main.replaceChildren(e instanceof ApiError && (e.status === 404 || e.status === 400)
      ? notFound(e.message) : note(`could not load this page: ${e.message}`));
  } finally {
    busy = false;
    main.dataset.rendered = String(Date.now());
    if (again) { again = false; refreshSoon(null); }
  }
  paintLive();
}
function refreshSoon(kind) {
  if (!current || live.static || (kind && !current.on.includes(kind))) return;
  if (timer) return;
  timer = setTimeout(() => { timer = null; render(); }, 250);
}

async function paintStatic() {     // the header bar without the stream: one read of the status
  try {
    const st = await api("/api/status");
    Object.assign(live, { height: st.height, round: st.round, phase: st.round_phase, mempool: st.mempool });
  } catch (_) { /* the page says what failed to load */ }
  const c = $("live-conn");
  if (c) { c.textContent = "static"; c.className = "conn off"; }
  paintLive();
}

async function start() {
  const main = $("main");
  const params = new URLSearchParams(location.search);
  live.static = params.get("static") === "1";
  const q = params.get("q");
  if (q && $("search-q")) $("search-q").value = q;
  if (main.dataset.notfound === "1") {
    main.dataset.rendered = String(Date.now());
  } else {
    const path = decodeURIComponent(location.pathname);
    for (const [re, view, on] of ROUTES) {
      const m = re.exec(path);
      if (m) { current = { view, args: m.slice(1), on }; break; }
    }
    if (current) await render();
    else { main.replaceChildren(notFound(`This node has no page ${path}.`)); main.dataset.rendered = String(Date.now()); }
  }
  if (live.static) await paintStatic();
  document.documentElement.dataset.ready = "1";             // drawn: what a screenshot can wait for
  if (!live.static) connect(refreshSoon, () => refreshSoon("reset"));   // after the first render: see live.js
}
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
