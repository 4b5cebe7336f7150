// popchain explorer: renders each page from this node's JSON API and keeps it live with /api/events (SSE).
// Every value from the API is inserted as text (textContent / createTextNode / setAttribute on our own
// attribute names), never as markup; links are built from our own paths with encoded segments.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const KNOWN_RECORD = new Set(["hash", "height", "round", "miner", "model_hash", "b", "c", "miner_address",
                                "accuracy"]);

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined) continue;
      if (typeof kid === "object" && !(kid instanceof Node)) throw new TypeError("el(): a child must be a node or text");
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }
  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const kid of kids.flat(Infinity)) if (kid) e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return e;
  }
  const seg = (s) => encodeURIComponent(String(s));
  const link = (path, text, attrs) => el("a", Object.assign({ href: path }, attrs || {}), text);
  const short = (h, n = 16) => (typeof h === "string" && h.length > n ? h.slice(0, n) + "…" : (h ?? "–"));
  const blockLink = (ref, text) => link(`/block/${seg(ref)}`, text ?? short(String(ref)), { class: "mono" });
  const roundLink = (r) => (r ? link(`/round/${seg(r)}`, `#${r}`) : "–");
  const addrLink = (a, kind = "account") => (a ? link(`/${kind}/${seg(a)}`, short(a, 20), { class: "mono", title: a }) : "–");
  const num = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : (n ?? "–"));
  const badge = (status) => el("span", { class: `badge ${status}`, text: status });
  const when = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "–");
  const acc = (a) => (a ? `${(100 * a.correct / a.n).toFixed(2)}% (${a.correct}/${a.n})` : "–");
  function kv(pairs) {
    return el("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v, id]) => [el("dt", { text: k }),
      el("dd", { id: id || null }, v ?? "–")]));
  }
  function stat(label, value, id) {
    return el("div", { class: "stat" }, el("div", { class: "label", text: label }),
      el("div", { class: "value", id: id || null }, value ?? "–"));
  }
  function table(headers, rows, attrs) {
    return el("table", attrs || {}, el("thead", {}, el("tr", {}, headers.map((h) =>
      el("th", { class: h.startsWith("#") ? "num" : null, text: h.replace(/^#/, "") })))),
      el("tbody", {}, rows));
  }
  const td = (v, cls) => el("td", { class: cls || null }, v ?? "–");
  function testRecord(rec) {  // whatever the round test records beyond b and c (z, or the sign test's fields)
    return Object.entries(rec || {}).filter(([k]) => !KNOWN_RECORD.has(k))
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
  }

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }
  async function api(path) {
    const r = await fetch(path, { headers: { Accept: "application/json" } });
    if (!r.ok) {
      let err = { code: "http-error", message: r.statusText };
      try { err = (await r.json()).error || err; } catch (_) { /* not JSON */ }
      throw new ApiError(r.status, err.code, err.message);
    }
    return r.json();
  }

  // ------------------------------------------------------------------ live state (events)
  const live = { height: null, round: null, phase: null, mempool: null, deadline: null, revealedAt: null,
                 openingS: 0, skew: 0, log: [] };

  function setText(id, v) { const e = $(id); if (e) e.textContent = v ?? "–"; }
  function paintLive() {
    setText("live-height", live.height);
    setText("live-round", live.round);
    setText("live-phase", live.phase);
    setText("live-mempool", live.mempool);
    setText("ov-height-live", live.height);
    setText("ov-phase-live", live.phase);
    setText("ov-mempool-live", live.mempool);
    tick();
  }
  function countdownText() {
    const now = Date.now() + live.skew;
    if (live.phase === "open" && live.deadline) {
      const s = Math.max(0, (live.deadline - now) / 1000);
      return `entries close in ${s.toFixed(1)} s`;
    }
    if (live.phase === "revealed" && live.revealedAt && live.openingS) {
      const s = Math.max(0, (live.revealedAt + live.openingS * 1000 - now) / 1000);
      return `openings close in ${s.toFixed(1)} s`;
    }
    return "";
  }
  function tick() {
    const t = countdownText();
    setText("live-countdown", t);
    setText("ov-countdown", t || "–");
  }
  setInterval(tick, 200);

  function applyRound(d, timeMs) {
    if (d.round !== undefined) live.round = d.round;
    if (d.phase !== undefined) {
      if (d.phase === "revealed" && live.phase !== "revealed") live.revealedAt = timeMs || null;
      live.phase = d.phase;
    }
    if (d.entry_deadline_ms !== undefined) live.deadline = d.entry_deadline_ms;
    if (d.opening_window_s !== undefined) live.openingS = d.opening_window_s;
  }

  let lastId = null;
  function connect() {
    const url = lastId === null ? "/api/events" : `/api/events?last_event_id=${seg(lastId)}`;
    const es = new EventSource(url);
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
      if (lastId !== null && d.stream !== streamId) refreshSoon("reset");
      streamId = d.stream;
      paintLive();
    });
    const onEvent = (m) => {
      const d = JSON.parse(m.data);
      lastId = d.id;
      if (d.kind === "tip") live.height = d.height;
      else if (d.kind === "round") applyRound(d, d.time_ms);
      else if (d.kind === "mempool") live.mempool = d.size;
      live.log.unshift(d);
      live.log.length = Math.min(live.log.length, 40);
      paintLive();
      refreshSoon(d.kind);
    };
    for (const k of ["tip", "round", "beacon", "verdict", "mempool", "reset"]) es.addEventListener(k, onEvent);
    es.addEventListener("dropped", () => { es.close(); setTimeout(connect, 500); });
  }
  let streamId = null;

  // ------------------------------------------------------------------ views
  async function overview() {
    const [st, champ] = await Promise.all([api("/api/status"), api("/api/champion")]);
    live.height = st.height; live.mempool = st.mempool;
    const cm = st.committee && st.committee.reachable !== undefined ? st.committee : null;
    const health = st.equivocations.length ? `EQUIVOCATION in round ${st.equivocations[0].round}`
      : cm && cm.below_threshold ? `KEYHOLDERS BELOW THRESHOLD (${cm.reachable} of ${cm.n}, need ${cm.threshold})`
      : st.syncing ? `syncing (${st.syncing} wanted)` : st.peers ? "ok" : "ok (no peers)";
    // the keyholder committee's liveness and the evidence against its members (PROTOCOL §3.10, §3.14)
    const warnings = [];
    if (cm && cm.below_threshold) {
      warnings.push(`Only ${cm.reachable} of ${cm.n} keyholders are reachable (threshold ${cm.threshold}): ` +
        "no round can reveal until more come back.");
    }
    const evidence = st.committee_evidence || [];
    if (evidence.length) {
      const kinds = [...new Set(evidence.map((e) => e.what))].join(", ");
      warnings.push(`Keyholder evidence: ${evidence.length} record(s) (${kinds}) against ` +
        [...new Set(evidence.map((e) => e.signer.slice(0, 16)))].join(", ") + ".");
    }
    const c = champ.champion || {};
    const heights = [];
    for (let h = st.height; h >= 0 && h > st.height - 10; h--) heights.push(h);
    const blocks = await Promise.all(heights.map((h) => api(`/api/blocks/${h}`).catch(() => null)));
    return el("div", {},
      warnings.length ? el("div", { class: "banner", id: "committee-banner" }, warnings.join(" ")) : null,
      el("h1", { text: "Overview" }),
      el("div", { class: "grid" },
        stat("Chain", st.chain_id),
        stat("Height", link(`/block/${st.height}`, String(st.height), { id: "ov-height-live" })),
        stat("Tip", blockLink(st.tip)),
        stat("Round", el("span", {}, roundLink(st.round), " of ", String(st.rounds_total))),
        stat("Phase", el("span", { id: "ov-phase-live" }, st.round_phase)),
        stat("Countdown", "–", "ov-countdown"),
        stat("Peers", el("a", { href: "/peers", text: String(st.peers) })),
        stat("Mempool", el("span", { id: "ov-mempool-live" }, String(st.mempool))),
        stat("Health", health, "ov-health"),
        cm ? stat("Keyholders", `${cm.reachable} of ${cm.n} reachable (threshold ${cm.threshold})`, "ov-keyholders")
          : null,
        stat("Champion", c.height ? el("span", {}, blockLink(c.height, `block ${c.height}`), " round ",
          roundLink(c.round)) : "genesis model")),
      el("h2", { text: "Latest blocks" }),
      el("div", { class: "card" }, table(["#height", "hash", "round", "miner", "#txs", "time"],
        blocks.filter(Boolean).map((b) => el("tr", { "data-height": b.header.height },
          td(blockLink(b.header.height, String(b.header.height)), "num"), td(blockLink(b.hash)),
          td(roundLink(b.header.round)), td(addrLink(b.header.miner_address, "miner")),
          td(String(b.txs.length), "num"), td(when(b.header.timestamp * 1000)))), { id: "latest-blocks" })),
      el("h2", { text: "Live events" }),
      el("div", { class: "card events", id: "event-log" }, live.log.length ? table(["#id", "event", "detail", "time"],
        live.log.map((e) => el("tr", {}, td(String(e.id), "num"), td(e.kind), td(eventDetail(e)),
          td(when(e.time_ms))))) : el("p", { class: "note", text: "waiting for events…" })));
  }
  function eventDetail(e) {
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

  function chart(rounds) {
    const W = 720, H = 260, L = 48, R = 12, T = 14, B = 30;
    const pts = rounds.filter((r) => r.accuracy && (r.status === "crowned" || r.status === "void"));
    const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", id: "accuracy-chart",
                              "aria-label": "champion accuracy per round" });
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
      svg("text", { x: L, y: H - 8 }, `round ${r0}`), svg("text", { x: W - R - 60, y: H - 8 }, `round ${r1}`));
    if (pts.length) {
      box.append(svg("polyline", { class: "line", points: pts.map((p) =>
        `${x(p.round).toFixed(1)},${y(p.accuracy.correct / p.accuracy.n).toFixed(1)}`).join(" ") }));
    }
    for (const p of pts) {
      const cx = x(p.round), cy = y(p.accuracy.correct / p.accuracy.n);
      const title = svg("title", {}, `round ${p.round} ${p.status}: ${acc(p.accuracy)}`);
      if (p.status === "crowned") {
        box.append(svg("circle", { class: "crowned", cx, cy, r: 5, "data-round": p.round }, title));
      } else {
        box.append(svg("path", { class: "void", d: `M${cx - 4},${cy - 4}L${cx + 4},${cy + 4}M${cx - 4},${cy + 4}L${cx + 4},${cy - 4}`,
                                 "data-round": p.round }, title));
      }
    }
    return box;
  }

  const finalRound = (lb, r) => (lb.rounds.find((x) => x.round === r) || { status: "crowned" }).status === "crowned";
  async function leaderboard() {
    const lb = await api("/api/explorer/leaderboard");
    const lineage = lb.lineage.slice().reverse();
    const crowned = lb.rounds.filter((r) => r.status === "crowned").length;
    const voided = lb.rounds.filter((r) => r.status === "void").length;
    return el("div", {},
      el("h1", { text: "Leaderboard" }),
      el("p", { class: "note" }, `Round ${lb.current_round} of ${lb.rounds_total}: ${crowned} crowned, ${voided} void. `,
        "Accuracy is each champion's score on its round's hidden shard, revealed by the beacon."),
      el("div", { class: "card chart" }, el("h2", { text: "Champion accuracy per round" }), chart(lb.rounds),
        el("p", { class: "note" }, "● crowned: a new champion  ✕ void: the champion held")),
      el("h2", { text: "Champion lineage" }),
      el("div", { class: "card" }, table(["round", "#block", "miner", "#b", "#c", "test", "accuracy", "model"],
        lineage.map((rec) => el("tr", { id: `champion-${rec.height}`, "data-round": rec.round },
          td(rec.round ? el("span", {}, roundLink(rec.round), finalRound(lb, rec.round) ? null : " (leading, not final)")
            : "genesis"), td(blockLink(rec.height, String(rec.height)), "num"),
          td(addrLink(rec.miner_address, "miner")), td(String(rec.b), "num b"), td(String(rec.c), "num c"),
          td(testRecord(rec), "test mono"), td(acc(rec.accuracy), "acc"),
          td(link(`/api/models/${seg(rec.model_hash)}`, "download", { download: `${rec.model_hash}.model` })))),
      { id: "lineage" })));
  }

  async function round(r) {
    const [info, tl] = await Promise.all([api(`/api/rounds/${seg(r)}`),
      api(`/api/explorer/rounds/${seg(r)}/timeline`).catch(() => ({ phases: [] }))]);
    const v = info.verdict;
    const n = Number(r);
    return el("div", {},
      el("h1", {}, `Round ${r} `, badge(info.status)),
      el("p", {}, n > 1 ? link(`/round/${n - 1}`, "← previous") : null, " ", link(`/round/${n + 1}`, "next →")),
      el("div", { class: "card" }, kv([
        ["status", el("span", { id: "round-status" }, info.status)],
        ["anchor", info.anchor ? blockLink(info.anchor) : "–"],
        ["entries seen", String(info.entries_seen)],
        ["beacon", info.beacon ? "published" : "not yet"],
        ["shard key", info.shard_key ? el("span", { class: "mono" }, info.shard_key) : "hidden until the beacon"],
        ["verdict", v ? el("span", {}, "crowned ", blockLink(v.hash), " by ", addrLink(v.miner_address, "miner"),
          ` (b=${v.b}, c=${v.c}${testRecord(v) ? ", " + testRecord(v) : ""})`) : info.status === "void" ? "void" : "pending"],
      ])),
      el("h2", { text: "Phase timeline (as seen by this node)" }),
      el("div", { class: "timeline", id: "round-timeline" }, tl.phases.length ? tl.phases.map((p) =>
        el("div", { class: "step" }, el("b", { text: p.phase }), " ", when(p.time_ms)))
        : el("span", { class: "note", text: "not observed by this node since it started" })),
      el("h2", { text: `Entries (${info.entries.length})` }),
      el("div", { class: "card" }, info.entries.length ? table(["header hash"], info.entries.map((h) =>
        el("tr", {}, td(el("span", { class: "mono" }, h))))) : el("p", { class: "note", text: "none revealed" })),
      el("h2", { text: "Candidates" }),
      el("div", { class: "card" }, info.candidates.length ? table(["block", "#b", "#c", "test"],
        info.candidates.map((c) => el("tr", {}, td(blockLink(c.hash)), td(String(c.b), "num"),
          td(String(c.c), "num"), td(testRecord(c), "mono")))) :
        el("p", { class: "note", text: "no opened candidates (listed for the current round only)" })));
  }

  async function block(ref) {
    const b = await api(`/api/blocks/${seg(ref)}`);
    const h = b.header;
    return el("div", {},
      el("h1", {}, `Block ${h.height}`),
      el("p", {}, h.height > 0 ? link(`/block/${h.height - 1}`, "← parent") : null, " ",
        link(`/block/${h.height + 1}`, "child →")),
      el("div", { class: "card" }, kv([
        ["hash", el("span", { class: "mono", id: "block-hash" }, b.hash)],
        ["height", String(h.height)], ["main chain", b.main_chain ? "yes" : "no (side branch)"],
        ["previous", h.height > 0 ? blockLink(h.prev_hash, h.prev_hash) : "–"],
        ["round", roundLink(h.round)], ["time", new Date(h.timestamp * 1000).toISOString()],
        ["miner", addrLink(h.miner_address, "miner")],
        ["model", el("span", {}, el("span", { class: "mono" }, short(b.model_hash, 24)), ` ${num(b.model_size)} bytes `,
          link(`/api/models/${seg(b.model_hash)}`, "download", { download: `${b.model_hash}.model` }))],
        ["payload", `${num(b.payload_size)} bytes`],
        ["state root", el("span", { class: "mono" }, h.state_root)], ["tx root", el("span", { class: "mono" }, h.tx_root)],
      ])),
      el("h2", { text: `Transfers (${b.txs.length})` }),
      el("div", { class: "card" }, b.txs.length ? txTable(b.txs) : el("p", { class: "note", text: "none" })));
  }
  function txTable(txs) {
    return table(["txid", "from", "to", "#amount", "#fee", "#nonce"], txs.map((t) => {
      const tx = t.tx || t;
      return el("tr", {}, td(link(`/tx/${seg(tx.txid)}`, short(tx.txid), { class: "mono" })),
        td(addrLink(tx.from_address)), td(addrLink(tx.to_address)), td(num(tx.amount), "num"),
        td(num(tx.fee), "num"), td(String(tx.nonce), "num"));
    }));
  }

  async function tx(txid) {
    const t = await api(`/api/txs/${seg(txid)}`);
    const x = t.tx;
    return el("div", {},
      el("h1", {}, "Transfer ", badge(t.status)),
      el("div", { class: "card" }, kv([
        ["txid", el("span", { class: "mono", id: "tx-id" }, x.txid)], ["status", el("span", { id: "tx-status" }, t.status)],
        t.status === "confirmed" ? ["block", el("span", {}, blockLink(t.height, String(t.height)), " ", blockLink(t.block))] : null,
        ["from", addrLink(x.from_address)], ["to", addrLink(x.to_address)], ["amount", num(x.amount)],
        ["fee", num(x.fee)], ["nonce", String(x.nonce)],
      ])));
  }

  const PAGE = 25;
  async function history(addr, before) {
    try {  // the store's indexed, cursor-paged history (newest first), when this node has it
      const q = before ? `&before=${seg(before)}` : "";
      const h = await api(`/api/accounts/${seg(addr)}/txs?limit=${PAGE}${q}`);
      const items = Array.isArray(h) ? h : (h.txs || h.items || []);
      return { items, next: h.next || null, source: "the account index" };
    } catch (e) {
      if (e instanceof ApiError && e.status === 400) throw e;  // a bad cursor in the URL: say so
    }
    const st = await api("/api/status");  // older nodes: scan recent blocks
    const found = [];
    const SCAN = 200;
    const top = before ? Math.min(st.height, parseInt(before, 10) - 1) : st.height;
    for (let hgt = top; hgt > Math.max(0, top - SCAN); hgt -= 20) {
      const hs = []; for (let k = hgt; k > Math.max(0, hgt - 20); k--) hs.push(k);
      const bs = await Promise.all(hs.map((k) => api(`/api/blocks/${k}`).catch(() => null)));
      for (const b of bs.filter(Boolean)) for (const t of b.txs) {
        if (t.from_address === addr || t.to_address === addr) found.push({ height: b.header.height, tx: t });
      }
    }
    const items = found.slice(0, PAGE);
    const next = found.length > PAGE ? String(items[items.length - 1].height) : null;
    return { items, next, source: `a scan of ${SCAN} blocks` };
  }

  async function account(addr) {
    const before = new URLSearchParams(location.search).get("before");
    const [a, h] = await Promise.all([api(`/api/accounts/${seg(addr)}`), history(addr, before)]);
    return el("div", {},
      el("h1", { text: "Account" }),
      el("div", { class: "card" }, kv([
        ["address", el("span", { class: "mono", id: "account-address" }, a.address)],
        ["balance", el("span", { id: "account-balance" }, num(a.balance))], ["nonce", String(a.nonce)],
        ["next nonce", String(a.next_nonce)], ["miner view", addrLink(a.address, "miner")],
      ])),
      el("h2", { text: `Pending (${a.pending.length})` }),
      el("div", { class: "card" }, a.pending.length ? txTable(a.pending) : el("p", { class: "note", text: "none" })),
      el("h2", { text: `History${before ? " (older page)" : ""}, from ${h.source}` }),
      el("div", { class: "card", id: "account-history" },
        h.items.length ? historyTable(h.items) : el("p", { class: "note", text: "no transfers" }),
        el("p", {}, before ? link(location.pathname, "← newest") : null, " ",
          h.next ? link(`?before=${seg(h.next)}`, "older →", { id: "history-older" }) : null)));
  }
  function historyTable(items) {
    return table(["#height", "txid", "direction", "from", "to", "#amount", "#fee"], items.map((it) => {
      const tx = it.tx || it;
      return el("tr", {}, td(it.height !== undefined ? blockLink(it.height, String(it.height)) : "–", "num"),
        td(link(`/tx/${seg(tx.txid)}`, short(tx.txid), { class: "mono" })), td(it.direction || ""),
        td(addrLink(tx.from_address)), td(addrLink(tx.to_address)), td(num(tx.amount), "num"), td(num(tx.fee), "num"));
    }));
  }

  async function miner(addr) {
    const m = await api(`/api/explorer/miners/${seg(addr)}`);
    return el("div", {},
      el("h1", { text: "Miner" }),
      el("div", { class: "grid" }, stat("Address", addrLink(m.address)), stat("Wins", String(m.wins), "miner-wins"),
        stat("Rewards", num(m.rewards), "miner-rewards"), stat("Balance", num(m.balance))),
      el("p", { class: "note" }, `${num(m.block_rewards)} in block rewards + ${num(m.fees)} in fees.`),
      el("h2", { text: "Crowned models" }),
      el("div", { class: "card" }, m.crowned.length ? table(["round", "#block", "#b", "#c", "test", "model"],
        m.crowned.map((rec) => el("tr", {}, td(roundLink(rec.round)), td(blockLink(rec.height, String(rec.height)), "num"),
          td(String(rec.b), "num"), td(String(rec.c), "num"), td(testRecord(rec), "mono"),
          td(link(`/api/models/${seg(rec.model_hash)}`, "download", { download: `${rec.model_hash}.model` })))))
        : el("p", { class: "note", text: "no wins yet" })));
  }

  async function peers() {
    const p = await api("/api/peers");
    return el("div", {},
      el("h1", { text: `Peers (${p.peers.length})` }),
      el("div", { class: "card" }, p.peers.length ? table(["address", "direction", "#height", "agent", "#score",
        "#rtt ms", "#connected s", "#bytes in", "#bytes out"], p.peers.map((x) => el("tr", {},
        td(x.address, "mono"), td(x.inbound ? "in" : "out"), td(String(x.height), "num"), td(x.agent),
        td(String(x.score), "num"), td(x.rtt_ms === null ? "–" : String(x.rtt_ms), "num"),
        td(String(x.connected_s), "num"), td(num(x.bytes_in), "num"), td(num(x.bytes_out), "num"))))
        : el("p", { class: "note", text: "no connected peers" })),
      el("h2", { text: `Known addresses (${p.known.length})` }),
      el("div", { class: "card mono" }, p.known.length ? p.known.join("  ") : "none"),
      el("h2", { text: "Discouraged" }),
      el("div", { class: "card mono" }, Object.keys(p.discouraged).length ? Object.entries(p.discouraged)
        .map(([a, until]) => `${a} until ${new Date(until * 1000).toLocaleTimeString()}`).join("  ") : "none"));
  }

  // ------------------------------------------------------------------ router
  const ALL = ["tip", "round", "beacon", "verdict", "mempool", "reset"];
  const ROUTES = [
    [/^\/$/, overview, ALL],
    [/^\/leaderboard$/, leaderboard, ["verdict", "beacon", "reset"]],
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
      main.dataset.rendered = String(Date.now());
    } catch (e) {
      main.replaceChildren(e instanceof ApiError && (e.status === 404 || e.status === 400)
        ? notFound(e.message) : el("p", { class: "note", text: `could not load this page: ${e.message}` }));
    } finally {
      busy = false;
      if (again) { again = false; refreshSoon(null); }
    }
    paintLive();
  }
  function refreshSoon(kind) {
    if (!current || (kind && !current.on.includes(kind))) return;
    if (timer) return;
    timer = setTimeout(() => { timer = null; render(); }, 250);
  }

  function start() {
    const main = $("main");
    const q = new URLSearchParams(location.search).get("q");
    if (q && $("search-q")) $("search-q").value = q;
    if (main.dataset.notfound !== "1") {
      const path = decodeURIComponent(location.pathname);
      for (const [re, view, on] of ROUTES) {
        const m = re.exec(path);
        if (m) { current = { view, args: m.slice(1), on }; break; }
      }
      if (current) render(); else main.replaceChildren(notFound(`This node has no page ${path}.`));
    }
    connect();
  }
  document.addEventListener("DOMContentLoaded", start);
})();
