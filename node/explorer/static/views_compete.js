// popchain explorer: the competition views — leaderboard (all tasks or one), the task list, a task's
// competition page (Kaggle-style: facts, champion curve, every round with every entrant), a round, a miner.
// An entrant's verdict: crowned (its block is the new champion), plain (its block was kept without crowning),
// lost (opened, not better), not opened (listed, never opened: its bond is forfeited); in the current round
// also leading / opened / not opened yet.
"use strict";
import {
  el, api, kv, stat, table, td, note, num, grains, short, pct, acc, when, link, blockLink, roundLink, taskLink,
  addrLink, modelLink, badge, seg, filterBar, queryTask,
} from "./ui.js";
import { accuracyChart, chartLegend } from "./chart.js";
import { competition } from "./views_chain.js";

// bar: the least b that crowns with b + c disagreements; 0 = no b does (too few disagreements for the test)
const barText = (bar) => (bar === 0 ? "none" : num(bar));
const ruleText = (rec) => (rec && rec.bar !== null && rec.bar !== undefined
  ? (rec.bar === 0 ? `no b crowns with ${num(rec.b + rec.c)} disagreements` : `needs b ≥ ${num(rec.bar)}`) : "");
const detects = (d) => (typeof d === "number" ? `+${(100 * d).toFixed(2)} pp at 80 % power` : "nothing at 80 % power");

export async function leaderboard() {
  const task = queryTask();
  const lb = await api(`/api/explorer/leaderboard${task === null ? "" : `?task=${task}`}`);
  const lineage = lb.lineage.slice().reverse();
  const count = (k) => lb.tasks.reduce((s, t) => s + (t.counts[k] || 0), 0);
  const finalRound = (r) => (lb.rounds.find((x) => x.round === r) || { status: "crowned" }).status !== "revealed";
  return el("div", {},
    el("h1", { text: task === null ? "Leaderboard" : `Leaderboard: task ${task}` }),
    filterBar(lb.tasks, task, "/leaderboard"),
    el("p", { class: "note", id: "leaderboard-summary" }, `Round ${num(lb.current_round)}; `,
      `${num(lb.rounds_scheduled)} rounds scheduled by ${lb.tasks.length === 1 ? "this task" : `${lb.tasks.length} tasks`}; `,
      `${num(count("crowned"))} crowned, ${num(count("void"))} void${count("plain") ? `, ${num(count("plain"))} plain` : ""}. `,
      "Accuracy is the round's task's champion after the round, on the round's hidden shard (revealed by its beacon).",
      ...lb.tasks.filter((t) => t.bayes && t.bayes.gap_pp !== null).map((t) => el("span", { class: "bayes", "data-task": t.task_id },
        ` Task ${t.task_id}: Bayes-optimal accuracy ${t.bayes.bayes_accuracy.toFixed(3)} (its generator's concept, round ${num(t.bayes.round)}); `
        + `the champion's gap to it ${t.bayes.gap_pp.toFixed(1)} pp.`))),
    el("div", { class: "card chart" }, el("h2", { text: "Champion accuracy per round" }),
      accuracyChart(lb.rounds, lb.tasks), chartLegend(lb.tasks)),
    el("h2", { text: "Champion lineage" }),
    el("div", { class: "card" }, table(["round", "task", "#block", "miner", "#b", "#c", "#bar", "accuracy", "model"],
      lineage.map((rec) => el("tr", { id: rec.initial ? `initial-${rec.task_id}` : `champion-${rec.height}`,
        "data-round": rec.round, "data-task": rec.task_id },
        td(rec.round ? el("span", {}, roundLink(rec.round), finalRound(rec.round) ? null : " (leading, not final)")
          : (rec.task_id ? "announced" : "genesis")), td(taskLink(rec.task_id)),
        td(rec.height ? blockLink(rec.height, num(rec.height)) : "–", "num"),
        td(addrLink(rec.miner_address, "miner")), td(num(rec.b), "num b"), td(num(rec.c), "num c"),
        td(rec.round ? num(rec.bar) : "–", "num bar"), td(acc(rec.accuracy), "acc"), td(modelLink(rec.model_hash)))),
    { id: "lineage" })));
}

export async function tasks() {
  const data = await api("/api/explorer/tasks");
  return el("div", {},
    el("h1", { text: "Tasks" }),
    note(`${num(data.tasks_open)} open of ${num(data.tasks_total)}; ${num(data.shards_left)} hidden shards left. ` +
      "Each task is a competition: its rounds crown models that beat its champion on its hidden shards."),
    el("div", { class: "card" }, table(["task", "status", "sponsor", "#bounty paid", "#bounty left", "#shards left",
      "#crowned", "#void", "detects", "champion"], data.tasks.map((t) => el("tr", { id: `task-${t.task_id}` },
      td(taskLink(t.task_id, t.name)), td(badge(t.status)), td(t.sponsor_address ? addrLink(t.sponsor_address) : "genesis"),
      td(t.sponsor ? grains(t.bounty_paid) : "–", "num"), td(t.sponsor ? grains(t.bounty_left) : "–", "num"),
      td(`${num(t.shards_left)} of ${num(t.shards_total)}`, "num"), td(num(t.rounds.crowned), "num"),
      td(num(t.rounds.void), "num"), td(detects(t.detectable)),
      td(t.champion && t.champion.height ? el("span", {}, "round ", roundLink(t.champion.round)) : "initial model"))),
    { id: "task-list" })));
}

function entrantRows(rounds) {
  const rows = [];
  for (const r of rounds) {
    const ents = r.entrants.length ? r.entrants : [null];
    ents.forEach((e, i) => rows.push(el("tr", { class: i === 0 ? "first" : null, "data-round": r.round },
      td(i === 0 ? roundLink(r.round) : ""), td(i === 0 ? num(r.shard_index) : "", "num"),
      td(i === 0 ? badge(r.status) : ""),
      td(e ? addrLink(e.miner_address, "miner") : (r.status === "open" ? "entries not listed yet" : "no entrant")),
      td(e ? num(e.b) : "", "num b"), td(e ? num(e.c) : "", "num c"), td(e ? barText(e.bar) : "", "num bar"),
      td(e ? badge(e.verdict) : "", "verdict"))));
  }
  return rows;
}

export async function task(id) {
  const before = new URLSearchParams(location.search).get("before");
  const p = await api(`/api/explorer/tasks/${seg(id)}${before ? `?before=${seg(before)}` : ""}`);
  const t = p.task, c = t.champion || {};
  const scored = p.chart.filter((r) => r.accuracy);
  const latest = scored.length ? scored[scored.length - 1] : null;
  return el("div", {},
    el("h1", {}, `Task ${t.task_id}: ${t.name} `, badge(t.status)),
    el("div", { class: "grid", id: "task-facts" },
      stat("Sponsor", t.sponsor_address ? addrLink(t.sponsor_address) : "genesis (no sponsor)"),
      stat("Bounty", t.sponsor ? `${grains(t.bounty_total)}, ${grains(t.bounty_per_crowning)} a crowning` : "none"),
      stat("Bounty paid", t.sponsor ? grains(t.bounty_paid) : "–", "task-bounty-paid"),
      stat("Bounty left", t.sponsor ? grains(t.bounty_left) : "–", "task-bounty-left"),
      stat("Shards left", `${num(t.shards_left)} of ${num(t.shards_total)}`, "task-shards-left"),
      stat("Detects", detects(t.detectable), "task-detects"),
      stat("Shard size", `${num(t.shard_size)} rows`),
      stat("Rounds", `${num(t.rounds.crowned)} crowned · ${num(t.rounds.void)} void` +
        (t.rounds.plain ? ` · ${num(t.rounds.plain)} plain` : ""), "task-rounds"),
      stat("Champion", c.height ? el("span", {}, "round ", roundLink(c.round), " by ", addrLink(c.miner_address, "miner"))
        : "initial model"),
      stat("Champion accuracy", latest ? `${acc(latest.accuracy)} on round ${latest.round}` : "–", "task-accuracy"),
      stat("Features", t.spec ? `${num(t.spec.n_features)} → ${t.spec.classes.length} classes` : "–"),
      stat("Extensions", num(t.extensions))),
    el("p", {}, link(`/leaderboard?task=${seg(t.task_id)}`, "leaderboard of this task"), " · ",
      link(`/api/tasks/${seg(t.task_id)}`, "JSON")),
    el("div", { class: "card chart" }, el("h2", { text: "Champion accuracy" }),
      accuracyChart(p.chart, [t], { id: "task-chart" }), chartLegend([t])),
    el("h2", { text: "Rounds and entrants" }),
    note("Every entrant the round's beacon listed, with its b (challenger right, champion wrong), c (the reverse) " +
      "and the bar b had to reach. Losers' figures are what this node saw opened."),
    el("div", { class: "card" }, p.rounds.length ? table(["round", "#shard", "outcome", "miner", "#b", "#c", "#bar",
      "verdict"], entrantRows(p.rounds), { id: "task-rounds-table" }) : note("no round has served this task yet"),
      el("p", {}, before ? link(location.pathname, "← newest") : null, " ",
        p.next ? link(`?before=${seg(p.next)}`, "older rounds →", { id: "rounds-older" }) : null)));
}

export async function round(r) {
  const [info, tl] = await Promise.all([api(`/api/rounds/${seg(r)}`),
    api(`/api/explorer/rounds/${seg(r)}/timeline`).catch(() => ({ phases: [] }))]);
  const v = info.verdict;
  const n = Number(r);
  const listed = info.entries.length;
  const why = info.status === "void" ? voidReason(info) : null;
  return el("div", {},
    el("h1", {}, `Round ${num(n)} `, badge(info.status)),
    el("p", {}, n > 1 ? link(`/round/${n - 1}`, "← previous") : null, " ", link(`/round/${n + 1}`, "next →")),
    el("div", { class: "card" }, kv([
      ["status", el("span", { id: "round-status" }, info.status)],
      ["task", info.task_id === null ? (info.status === "idle" ? "none (every task had spent its shards)" : "–")
        : el("span", {}, taskLink(info.task_id), ` shard ${num(info.shard_index)}`)],
      ["anchor", info.anchor ? blockLink(info.anchor) : "–"],
      info.beacon ? ["entries", `${num(listed)} listed in the beacon`]
        : ["entries", `${num(info.entries_seen)} seen so far by this node (the beacon lists the final set)`],
      ["beacon", info.beacon ? `published ${when(info.revealed_ms)}` : "not yet"],
      ["shard key", info.shard_key ? el("span", { class: "mono" }, info.shard_key) : "hidden until the beacon"],
      ["verdict", v ? el("span", { id: "round-verdict" }, info.final ? "crowned " : "leading: ", blockLink(v.hash), " by ",
        addrLink(v.miner_address, "miner"), ` (b ${num(v.b)}, c ${num(v.c)}, ${ruleText(v)})`)
        : el("span", { id: "round-verdict" }, why || (info.final ? info.status : "pending"))],
    ])),
    el("h2", { text: `Entrants (${num(info.entrants.length)})` }),
    el("div", { class: "card" }, info.entrants.length ? table(["miner", "header", "#b", "#c", "#bar", "verdict"],
      info.entrants.map((e) => el("tr", { "data-verdict": e.verdict }, td(addrLink(e.miner_address, "miner")),
        td(short(e.header_hash), "mono"), td(num(e.b), "num b"), td(num(e.c), "num c"), td(barText(e.bar), "num bar"),
        td(badge(e.verdict), "verdict"))), { id: "round-entrants" })
      : note(info.beacon ? "none" : "listed by the beacon, after the entry window")),
    info.candidates.length ? el("div", {}, el("h2", { text: "Candidates (this round, scored)" }),
      el("div", { class: "card" }, table(["block", "#b", "#c", "#bar"], info.candidates.map((c) => el("tr", {},
        td(blockLink(c.hash)), td(num(c.b), "num"), td(num(c.c), "num"), td(num(c.bar), "num")))))) : null,
    el("h2", { text: "Phase timeline (as seen by this node)" }),
    el("div", { class: "timeline", id: "round-timeline" }, tl.phases.length ? tl.phases.map((p) =>
      el("div", { class: "step" }, el("b", { text: p.phase }), " ", when(p.time_ms)))
      : el("span", { class: "note", text: "not observed by this node since it started" })));
}
function voidReason(info) {     // why no block crowned: the best opening's figures against its bar
  const opened = info.entrants.filter((e) => e.b !== null);
  if (!info.entrants.length) return "void: nobody was listed";
  if (!opened.length) return "void: no listed entrant opened a valid block (as this node saw)";
  const best = opened.reduce((a, e) => (e.b - e.c > a.b - a.c ? e : a));
  return `void: no block passed the test; best b ${num(best.b)} c ${num(best.c)}, ${ruleText(best)}`;
}

export async function miner(addr) {
  const task = queryTask();
  const m = await api(`/api/explorer/miners/${seg(addr)}${task === null ? "" : `?task=${task}`}`);
  return el("div", {},
    el("h1", { text: "Miner" }),
    el("div", { class: "grid" }, stat("Address", addrLink(m.address)), stat("Wins", num(m.wins), "miner-wins"),
      stat("Rewards", grains(m.rewards), "miner-rewards"), stat("Balance", grains(m.balance))),
    note(`${grains(m.block_rewards)} in block rewards + ${grains(m.fees)} in fees + ${grains(m.bounty)} in bounties` +
      `${task === null ? "" : ` (task ${task})`}.`),
    competition(m, task, `/miner/${seg(addr)}`));
}

export { pct };
