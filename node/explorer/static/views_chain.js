// popchain explorer: the ledger views — overview, block, transfer, account, peers. Amounts are in grains
// (shown with the unit), times are the block's, confirmations count the tip block as 1.
"use strict";
import {
  el, api, ApiError, kv, stat, table, td, note, num, grains, short, when, ago, confirmations, link, blockLink,
  roundLink, addrLink, txLink, taskLink, modelLink, badge, seg, queryTask, filterBar,
} from "./ui.js";
import { live, eventDetail } from "./live.js";

// The keyholder committee's liveness and the evidence against its members (PROTOCOL §3.10, §3.14): a red
// banner while fewer than the threshold are reachable, once a member missed a release or once any is caught.
function committeeBanner(st, cm) {
  const warnings = [];
  if (cm && cm.below_threshold) {
    warnings.push(`Only ${cm.reachable} of ${cm.n} keyholders are reachable (threshold ${cm.threshold}): ` +
      "no round can reveal until more come back.");
  }
  // a member that released no share in a revealed round (a node's observation, not a proof: §3.10)
  const missed = cm ? (cm.members || []).filter((m) => m.missed_releases) : [];
  if (missed.length) {
    warnings.push("Missed releases: " + missed.map((m) => `keyholder ${m.member} in ${m.missed_releases} ` +
      `round(s), last round ${m.last_missed_round}`).join("; ") + ".");
  }
  const evidence = st.committee_evidence || [];
  if (evidence.length) {
    const kinds = [...new Set(evidence.map((e) => e.what))].join(", ");
    const who = [...new Set(evidence.map((e) => e.signer.slice(0, 16)))].join(", ");
    warnings.push(`Keyholder evidence: ${evidence.length} record(s) (${kinds}) against ${who}.`);
  }
  return warnings.length ? el("div", { class: "banner", id: "committee-banner" }, warnings.join(" ")) : null;
}

export async function overview() {
  const [st, champ, tasks] = await Promise.all([api("/api/status"), api("/api/champion"), api("/api/tasks")]);
  live.height = st.height; live.mempool = st.mempool;
  const cm = st.committee && st.committee.reachable !== undefined ? st.committee : null;
  const health = st.equivocations.length ? `EQUIVOCATION in round ${st.equivocations[0].round}`
    : cm && cm.below_threshold ? `KEYHOLDERS BELOW THRESHOLD (${cm.reachable} of ${cm.n}, need ${cm.threshold})`
    : st.syncing ? `syncing (${st.syncing} wanted)` : st.peers ? "ok" : "ok (no peers)";
  const c = champ.champion || {};
  const heights = [];
  for (let h = st.height; h >= 0 && h > st.height - 10; h--) heights.push(h);
  const blocks = await Promise.all(heights.map((h) => api(`/api/blocks/${h}`).catch(() => null)));
  const serving = st.round_task !== null && st.round_task !== undefined
    ? el("span", {}, " · task ", taskLink(st.round_task)) : null;
  return el("div", {},
    committeeBanner(st, cm),
    el("h1", { text: "Overview" }),
    el("div", { class: "grid" },
      stat("Chain", st.chain_id),
      stat("Height", link(`/block/${st.height}`, num(st.height), { id: "ov-height-live" })),
      stat("Tip", blockLink(st.tip)),
      stat("Round", el("span", { id: "ov-round" }, roundLink(st.round), serving)),
      stat("Phase", el("span", { id: "ov-phase-live" }, st.round_phase)),
      stat("Countdown", "–", "ov-countdown"),
      stat("Tasks", el("span", {}, link("/tasks", `${st.tasks_open} open of ${st.tasks_total}`),
        ` · ${num(st.shards_left)} shards left`)),
      stat("Peers", el("a", { href: "/peers", text: String(st.peers) })),
      stat("Mempool", el("span", { id: "ov-mempool-live" }, num(st.mempool))),
      stat("Health", health, "ov-health"),
      cm ? stat("Keyholders", `${cm.reachable} of ${cm.n} reachable (threshold ${cm.threshold})`, "ov-keyholders")
        : null,
      stat("Champion", c.height ? el("span", {}, blockLink(c.height, `block ${c.height}`), " round ",
        roundLink(c.round), " task ", taskLink(c.task_id)) : "initial model")),
    st.round_phase === "closed" ? note("No task is open: the chain makes no blocks until a task is announced " +
      "or extended; pending transfers wait and confirm then.", { id: "closed-note" }) : null,
    el("h2", {}, link("/tasks", "Tasks")),
    el("div", { class: "card" }, table(["task", "status", "#shards left", "#bounty left", "champion"],
      tasks.tasks.map((t) => el("tr", {}, td(taskLink(t.task_id, t.name)), td(badge(t.status)),
        td(num(t.shards_left), "num"), td(t.sponsor ? grains(t.bounty_left) : "–", "num"),
        td(t.champion && t.champion.height ? el("span", {}, "round ", roundLink(t.champion.round), " by ",
          addrLink(t.champion.miner_address, "miner")) : "initial model"))), { id: "overview-tasks" })),
    el("h2", { text: "Latest blocks" }),
    el("div", { class: "card" }, table(["#height", "hash", "round", "miner", "#txs", "time"],
      blocks.filter(Boolean).map((b) => el("tr", { "data-height": b.header.height },
        td(blockLink(b.header.height, num(b.header.height)), "num"), td(blockLink(b.hash)),
        td(roundLink(b.header.round)), td(addrLink(b.header.miner_address, "miner")),
        td(num(b.txs.length), "num"), td(when(b.header.timestamp * 1000)))), { id: "latest-blocks" })),
    el("h2", { text: "Live events" }),
    el("div", { class: "card events", id: "event-log" }, live.log.length ? table(["#id", "event", "detail", "time"],
      live.log.map((e) => el("tr", {}, td(num(e.id), "num"), td(e.kind), td(eventDetail(e)),
        td(when(e.time_ms))))) : note(live.static ? "static view: no live events" : "waiting for events…")));
}

export async function block(ref) {
  const b = await api(`/api/blocks/${seg(ref)}`);
  const h = b.header;
  return el("div", {},
    el("h1", {}, `Block ${num(h.height)}`),
    el("p", {}, h.height > 0 ? link(`/block/${h.height - 1}`, "← parent") : null, " ",
      link(`/block/${h.height + 1}`, "child →")),
    el("div", { class: "card" }, kv([
      ["hash", el("span", { class: "mono", id: "block-hash" }, b.hash)],
      ["height", num(h.height)], ["main chain", b.main_chain ? "yes" : "no (side branch)"],
      ["confirmations", confirmations(b.confirmations)],
      ["previous", h.height > 0 ? blockLink(h.prev_hash, h.prev_hash) : "–"],
      ["round", roundLink(h.round)], ["time", `${when(h.timestamp * 1000)} (${ago(h.timestamp * 1000)})`],
      ["miner", addrLink(h.miner_address, "miner")],
      ["model", el("span", {}, el("span", { class: "mono" }, short(b.model_hash, 24)), ` ${num(b.model_size)} bytes `,
        modelLink(b.model_hash))],
      ["payload", `${num(b.payload_size)} bytes`], ["fees", grains(b.fees)],
      ["state root", el("span", { class: "mono" }, h.state_root)], ["tx root", el("span", { class: "mono" }, h.tx_root)],
    ])),
    el("h2", { text: `Transfers (${num(b.txs.length)})` }),
    el("div", { class: "card" }, b.txs.length ? txTable(b.txs) : note("none")));
}
export function txTable(txs) {
  return table(["txid", "from", "to", "#amount", "#fee", "#nonce"], txs.map((t) => {
    const tx = t.tx || t;
    return el("tr", {}, td(txLink(tx.txid)), td(addrLink(tx.from_address)), td(addrLink(tx.to_address)),
      td(grains(tx.amount), "num"), td(grains(tx.fee), "num"), td(num(tx.nonce), "num"));
  }));
}

export async function tx(txid) {
  const t = await api(`/api/txs/${seg(txid)}`);
  const x = t.tx;
  return el("div", {},
    el("h1", {}, "Transfer ", badge(t.status)),
    el("div", { class: "card" }, kv([
      ["txid", el("span", { class: "mono", id: "tx-id" }, x.txid)], ["status", el("span", { id: "tx-status" }, t.status)],
      t.status === "confirmed" ? ["block", el("span", {}, blockLink(t.height, num(t.height)), " ", blockLink(t.block))] : null,
      t.status === "confirmed" ? ["time", `${when(t.time * 1000)} (${ago(t.time * 1000)})`] : null,
      ["confirmations", el("span", { id: "tx-confirmations" }, confirmations(t.confirmations || 0))],
      ["from", addrLink(x.from_address)], ["to", addrLink(x.to_address)],
      ["amount", el("span", { id: "tx-amount" }, grains(x.amount))], ["fee", el("span", { id: "tx-fee" }, grains(x.fee))],
      ["nonce", num(x.nonce)], x.memo ? ["memo", el("span", { class: "mono" }, x.memo)] : null,
    ])));
}

const PAGE = 25;
async function history(addr, before) {
  try {  // the store's indexed, cursor-paged history (newest first)
    const q = before ? `&before=${seg(before)}` : "";
    const h = await api(`/api/accounts/${seg(addr)}/txs?limit=${PAGE}${q}`);
    return { items: h.txs || [], next: h.next || null };
  } catch (e) {
    if (e instanceof ApiError && e.status === 400) throw e;  // a bad cursor in the URL: say so
    return { items: [], next: null };
  }
}

export async function account(addr) {
  const params = new URLSearchParams(location.search);
  const before = params.get("before");
  const task = queryTask();
  const [a, h, m] = await Promise.all([api(`/api/accounts/${seg(addr)}`), history(addr, before),
    api(`/api/explorer/miners/${seg(addr)}${task === null ? "" : `?task=${task}`}`)]);
  return el("div", {},
    el("h1", { text: "Account" }),
    el("div", { class: "card" }, kv([
      ["address", el("span", { class: "mono", id: "account-address" }, a.address)],
      ["balance", el("span", { id: "account-balance" }, grains(a.balance))], ["nonce", num(a.nonce)],
      ["next nonce", num(a.next_nonce)], ["miner view", addrLink(a.address, "miner")],
    ])),
    el("h2", { text: `Pending (${num(a.pending.length)})` }),
    el("div", { class: "card" }, a.pending.length ? txTable(a.pending) : note("none")),
    el("h2", { text: `History${before ? " (older page)" : ""}` }),
    el("div", { class: "card", id: "account-history" },
      h.items.length ? historyTable(h.items) : note("no transfers"),
      el("p", {}, before ? link(location.pathname, "← newest") : null, " ",
        h.next ? link(`?before=${seg(h.next)}`, "older →", { id: "history-older" }) : null)),
    competition(m, task, `/account/${seg(addr)}`));
}
function historyTable(items) {
  return table(["#height", "time", "#conf.", "txid", "direction", "from", "to", "#amount", "#fee"], items.map((it) => {
    const tx = it.tx || it;
    return el("tr", {}, td(it.height !== undefined ? blockLink(it.height, num(it.height)) : "–", "num"),
      td(it.time ? when(it.time * 1000) : "–"), td(num(it.confirmations), "num"),
      td(txLink(tx.txid)), td(it.direction || ""), td(addrLink(tx.from_address)), td(addrLink(tx.to_address)),
      td(grains(tx.amount), "num"), td(grains(tx.fee), "num"));
  }));
}

// an account's part in the competitions: crowned models (per task with ?task=), the tasks it sponsors
export function competition(m, task, base) {
  return el("div", { id: "competition" },
    el("h2", { text: "Competitions" }),
    filterBar(m.tasks, task, base),
    el("p", { class: "note" }, `Wins${task === null ? "" : ` on task ${task}`}: ${num(m.wins)}; by task: `,
      Object.entries(m.wins_by_task).map(([k, v], i) => [i ? " · " : "", taskLink(Number(k)), `: ${num(v)}`]),
      Object.keys(m.wins_by_task).length ? null : "none"),
    el("div", { class: "card" }, m.crowned.length ? table(["round", "task", "#block", "#b", "#c", "#bar", "model"],
      m.crowned.map((rec) => el("tr", { "data-task": rec.task_id }, td(roundLink(rec.round)), td(taskLink(rec.task_id)),
        td(blockLink(rec.height, num(rec.height)), "num"), td(num(rec.b), "num"), td(num(rec.c), "num"),
        td(num(rec.bar), "num"), td(modelLink(rec.model_hash))))) : note("no crowned models")),
    m.sponsored.length ? el("div", {}, el("h3", { text: "Tasks sponsored" }),
      el("div", { class: "card" }, table(["task", "status", "#bounty", "#per crowning", "#left"],
        m.sponsored.map((t) => el("tr", {}, td(taskLink(t.task_id, t.name)), td(badge(t.status)),
          td(grains(t.bounty_total), "num"), td(grains(t.bounty_per_crowning), "num"), td(grains(t.bounty_left), "num"))))))
      : null);
}

export async function peers() {
  const p = await api("/api/peers");
  return el("div", {},
    el("h1", { text: `Peers (${num(p.peers.length)})` }),
    el("div", { class: "card" }, p.peers.length ? table(["address", "direction", "#height", "agent", "#score",
      "#rtt ms", "#connected s", "#bytes in", "#bytes out"], p.peers.map((x) => el("tr", {},
      td(x.address, "mono"), td(x.inbound ? "in" : "out"), td(num(x.height), "num"), td(x.agent),
      td(num(x.score), "num"), td(x.rtt_ms === null ? "–" : x.rtt_ms.toFixed(1), "num"),
      td(num(Math.round(x.connected_s)), "num"), td(num(x.bytes_in), "num"), td(num(x.bytes_out), "num"))))
      : note("no connected peers")),
    el("h2", { text: `Known addresses (${num(p.known.length)})` }),
    el("div", { class: "card mono" }, p.known.length ? p.known.join("  ") : "none"),
    el("h2", { text: "Discouraged" }),
    el("div", { class: "card mono" }, Object.keys(p.discouraged).length ? Object.entries(p.discouraged)
      .map(([a, until]) => `${a} until ${when(until * 1000)}`).join("  ") : "none"));
}
