// popchain explorer: the champion-accuracy chart, drawn as SVG by the page. One series per task (its own
// colour, a legend), x = round, y = the accuracy of the round's task's champion after the round on the
// round's revealed shard; a mark per round: ● crowned, ✕ void, ◆ plain. A chart spanning a task switch
// therefore never joins one task's champion to another task's.
"use strict";
import { svg, acc, el } from "./ui.js";

const SERIES = 8;   // colour classes s0..s7 (style.css), by task id

export function accuracyChart(rounds, tasks, { id = "accuracy-chart" } = {}) {
  const W = 760, H = 280, L = 48, R = 12, T = 14, B = 30;
  const pts = rounds.filter((r) => r.accuracy && r.task_id !== null && r.task_id !== undefined);
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", id, "aria-label": "champion accuracy per round" });
  if (!rounds.length) return box;
  const r0 = rounds[0].round, r1 = Math.max(rounds[rounds.length - 1].round, r0 + 1);
  const ys = pts.map((p) => p.accuracy.correct / p.accuracy.n);
  let lo = Math.min(...ys, 1), hi = Math.max(...ys, 0);
  lo = Math.max(0, Math.floor(lo * 20) / 20 - 0.05); hi = Math.min(1, Math.ceil(hi * 20) / 20 + 0.05);
  if (hi <= lo) { lo = 0; hi = 1; }
  const x = (r) => L + (W - L - R) * (r - r0) / (r1 - r0);
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    box.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      svg("text", { x: 4, y: y(v) + 4 }, `${(100 * v).toFixed(0)}%`));
  }
  box.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }),
    svg("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }),
    svg("text", { x: L, y: H - 8 }, `round ${r0}`), svg("text", { x: W - R - 70, y: H - 8 }, `round ${r1}`));
  const byTask = new Map();
  for (const p of pts) {
    if (!byTask.has(p.task_id)) byTask.set(p.task_id, []);
    byTask.get(p.task_id).push(p);
  }
  for (const [task, series] of byTask) {
    const cls = `s${task % SERIES}`;
    box.append(svg("polyline", { class: `line ${cls}`, "data-task": task, points: series.map((p) =>
      `${x(p.round).toFixed(1)},${y(p.accuracy.correct / p.accuracy.n).toFixed(1)}`).join(" ") }));
    for (const p of series) {
      const cx = x(p.round), cy = y(p.accuracy.correct / p.accuracy.n);
      const title = svg("title", {}, `round ${p.round}, task ${task} shard ${p.shard_index}: ${p.status}, ${acc(p.accuracy)}`);
      const common = { "data-round": p.round, "data-task": task };
      if (p.status === "crowned" || p.status === "revealed") {
        box.append(svg("circle", { class: `crowned ${cls}`, cx, cy, r: 4.5, ...common }, title));
      } else if (p.status === "plain") {
        box.append(svg("path", { class: `plain ${cls}`, d: `M${cx},${cy - 5}L${cx + 5},${cy}L${cx},${cy + 5}L${cx - 5},${cy}Z`, ...common }, title));
      } else {
        box.append(svg("path", { class: `void ${cls}`, d: `M${cx - 4},${cy - 4}L${cx + 4},${cy + 4}M${cx - 4},${cy + 4}L${cx + 4},${cy - 4}`, ...common }, title));
      }
    }
  }
  return box;
}

export function chartLegend(tasks) {
  return el("p", { class: "legend" }, (tasks || []).map((t) => el("span", { class: `key s${t.task_id % SERIES}` },
    el("b", { text: "■ " }), `task ${t.task_id} ${t.name}  `)),
    "  ● crowned (a new champion)  ✕ void (the champion held)  ◆ plain (a block without a new champion)");
}
