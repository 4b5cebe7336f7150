// popchain explorer: live state from the node's event stream (GET /api/events, Server-Sent Events) — the
// header bar (height, round, phase, countdown, mempool) and the event log. The stream is opened only after
// the page's first render, and never in a static view (?static=1): a headless browser taking a screenshot
// then finds the page idle once it is drawn (an open stream keeps a page busy for ever).
"use strict";
import { $, el, seg, blockLink, roundLink } from "./ui.js";

export const live = { height: null, round: null, phase: null, mempool: null, deadline: null, revealedAt: null,
                      openingS: 0, skew: 0, log: [], static: false };

function setText(id, v) { const e = $(id); if (e) e.textContent = v ?? "–"; }
export function paintLive() {
  setText("live-height", live.height === null ? null : live.height.toLocaleString("en-US"));
  setText("live-round", live.round);
  setText("live-phase", live.phase);
  setText("live-mempool", live.mempool);
  setText("ov-height-live", live.height === null ? null : live.height.toLocaleString("en-US"));
  setText("ov-phase-live", live.phase);
  setText("ov-mempool-live", live.mempool);
  tick();
}
function countdownText() {
  const now = Date.now() + live.skew;
  if (live.phase === "open" && live.deadline) {
    return `entries close in ${Math.max(0, (live.deadline - now) / 1000).toFixed(1)} s`;
  }
  if (live.phase === "revealed" && live.revealedAt && live.openingS) {
    return `openings close in ${Math.max(0, (live.revealedAt + live.openingS * 1000 - now) / 1000).toFixed(1)} s`;
  }
  return "";
}
function tick() {
  const t = countdownText();
  setText("live-countdown", t);
  setText("ov-countdown", t || "–");
}

function applyRound(d, timeMs) {
  if (d.round !== undefined) live.round = d.round;
  if (d.phase !== undefined) {
    if (d.phase === "revealed" && live.phase !== "revealed") live.revealedAt = timeMs || null;
    live.phase = d.phase;
  }
  if (d.entry_deadline_ms !== undefined) live.deadline = d.entry_deadline_ms;
  if (d.opening_window_s !== undefined) live.openingS = d.opening_window_s;
}

export function eventDetail(e) {
  switch (e.kind) {
    case "tip": return el("span", {}, "height ", blockLink(e.height, String(e.height)));
    case "round": return el("span", {}, "round ", roundLink(e.round), ` ${e.phase}`);
    case "beacon": return el("span", {}, "beacon for round ", roundLink(e.round));
    case "verdict": return el("span", {}, "round ", roundLink(e.round), ` ${e.outcome}`,
      e.block ? el("span", {}, " by ", blockLink(e.block)) : null);
    case "mempool": return `${e.size} pending`;
    default: return e.reason || "";
  }
}

let lastId = null, streamId = null, started = false, current = null;
// leaving the page closes the stream at once: a browser keeps at most 6 connections to a host, and streams the
// server has not noticed closing yet would hold those slots and stall the next pages' loads
window.addEventListener("pagehide", () => { if (current) current.close(); });
// Open the event stream (once): ``onEvent(kind)`` is called for every event, ``onReset`` when the node restarted.
export function connect(onEvent, onReset) {
  if (started || live.static) return;
  started = true;
  setInterval(tick, 200);
  const open = () => {
    const url = lastId === null ? "/api/events" : `/api/events?last_event_id=${seg(lastId)}`;
    const es = new EventSource(url);
    current = es;
    es.addEventListener("open", () => { const c = $("live-conn"); c.textContent = "live"; c.className = "conn on"; });
    es.addEventListener("error", () => {
      const c = $("live-conn"); c.textContent = "reconnecting"; c.className = "conn off";
    });
    es.addEventListener("hello", (m) => {
      const d = JSON.parse(m.data);
      if (d.now_ms) live.skew = d.now_ms - Date.now();
      if (d.height !== undefined) live.height = d.height;
      if (d.mempool !== undefined) live.mempool = d.mempool;
      applyRound(d, d.revealed_ms);
      if (d.phase === "revealed" && d.revealed_ms) live.revealedAt = d.revealed_ms;
      if (lastId !== null && d.stream !== streamId) onReset();
      streamId = d.stream;
      paintLive();
    });
    const handle = (m) => {
      const d = JSON.parse(m.data);
      lastId = d.id;
      if (d.kind === "tip") live.height = d.height;
      else if (d.kind === "round") applyRound(d, d.time_ms);
      else if (d.kind === "mempool") live.mempool = d.size;
      live.log.unshift(d);
      live.log.length = Math.min(live.log.length, 40);
      paintLive();
      onEvent(d.kind);
    };
    for (const k of ["tip", "round", "beacon", "verdict", "mempool", "reset"]) es.addEventListener(k, handle);
    es.addEventListener("dropped", () => { es.close(); setTimeout(open, 500); });
  };
  open();
}
