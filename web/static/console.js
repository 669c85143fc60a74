// The Pulse console page: watchlist and live candles from /ws, charts and settings from /api.
"use strict";

const state = {
  ws: null, instruments: new Map(), rows: new Map(), selected: null, reqSeq: 0,
  chart: null, candles: null, volume: null, line: null, resolution: null, bars: [], ignoreRange: 0,
  token: "",
};
const WIDTHS = { "1w": 604800, "1d": 86400, "1h": 3600, "5m": 300, "1m": 60, "1s": 1 };
const $ = (sel) => document.querySelector(sel);
const key = (venue, symbol) => `${venue}:${symbol}`;

// -- exact decimal strings ------------------------------------------------------------------------------
function decParts(s) {
  const neg = s.startsWith("-"); const t = neg ? s.slice(1) : s;
  const [i, f = ""] = t.split(".");
  return { neg, digits: BigInt(i + f) * (neg ? -1n : 1n), scale: f.length };
}
function decSub(a, b) { // a - b, exactly, as a decimal string
  const x = decParts(a), y = decParts(b); const scale = Math.max(x.scale, y.scale);
  const v = x.digits * 10n ** BigInt(scale - x.scale) - y.digits * 10n ** BigInt(scale - y.scale);
  const neg = v < 0n; let s = (neg ? -v : v).toString().padStart(scale + 1, "0");
  if (scale) s = s.slice(0, -scale) + "." + s.slice(-scale);
  return (neg ? "-" : "") + s;
}

// -- API ------------------------------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.token) headers["Authorization"] = `Bearer ${state.token}`;
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const doc = await resp.json();
  return { ok: resp.ok, status: resp.status, doc };
}

// -- WebSocket ------------------------------------------------------------------------------------------
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const q = state.token ? `?token=${encodeURIComponent(state.token)}` : "";
  const ws = new WebSocket(`${proto}://${location.host}/ws${q}`);
  state.ws = ws;
  ws.onopen = () => {
    setConn("live", "ok");
    send({ op: "subscribe", channels: ["alerts", "fills"] });
    for (const inst of state.instruments.values()) subscribe(inst);
  };
  ws.onclose = (ev) => { setConn(`disconnected (${ev.code}) — retrying`, "bad"); setTimeout(connect, 1000); };
  ws.onmessage = (ev) => onEvent(JSON.parse(ev.data));
}
function send(msg) { if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg)); }
function setConn(text, cls) { const el = $("#conn"); el.textContent = text; el.className = `badge ${cls}`; }
function subscribe(inst) {
  const channels = ["trade", "quote"].filter((c) => inst.streams.includes(c));
  if (inst.enabled && channels.length) send({ op: "subscribe", venue: inst.venue, symbol: inst.symbol, channels });
}

function onEvent(e) {
  switch (e.type) {
    case "trade": return onPrice(e, e.price, e.size);
    case "quote": return onQuote(e);
    case "alert": return addItem("#alerts", `${fmtTime(e.ts_event)} ${e.venue} ${e.symbol}: ${e.message}`);
    case "execution":
      if (e.kind === "fill") addItem("#fills", fillText(e));
      return;
    case "error": console.warn("gateway:", e.error); return;
    default: return;
  }
}

// -- watchlist ------------------------------------------------------------------------------------------
function row(venue, symbol) {
  const k = key(venue, symbol);
  let r = state.rows.get(k);
  if (!r) {
    const tr = document.createElement("tr");
    tr.dataset.key = k;
    tr.innerHTML = `<td>${venue} ${symbol}</td><td class="last">—</td><td class="change">—</td><td class="spread">—</td><td class="age">—</td>`;
    tr.onclick = () => select(venue, symbol);
    $("#watchlist tbody").appendChild(tr);
    r = { tr, last: null, ref: null, recv: 0 };
    state.rows.set(k, r);
    loadReference(venue, symbol, r);
  }
  return r;
}
async function loadReference(venue, symbol, r) {
  const today = new Date(); today.setUTCHours(0, 0, 0, 0);
  const { ok, doc } = await api("GET", `/api/candles?venue=${venue}&symbol=${encodeURIComponent(symbol)}&interval=1d&from=${today.getTime() / 1000}`);
  if (ok && doc.candles.length && r.ref === null) r.ref = doc.candles[0].open;
}
function onPrice(e, price, size) {
  const r = row(e.venue, e.symbol);
  if (r.ref === null) r.ref = price;
  const cell = r.tr.querySelector(".last");
  cell.textContent = price;
  cell.classList.remove("flash"); void cell.offsetWidth; cell.classList.add("flash");
  r.last = price; r.recv = e.ts_recv;
  const ch = (Number(price) / Number(r.ref) - 1) * 100;
  const chCell = r.tr.querySelector(".change");
  chCell.textContent = `${ch >= 0 ? "+" : ""}${ch.toFixed(2)}%`;
  chCell.className = `change ${ch > 0 ? "up" : ch < 0 ? "down" : ""}`;
  if (state.selected === key(e.venue, e.symbol)) liveBar(e.ts_event, price, size);
}
function onQuote(e) {
  const r = row(e.venue, e.symbol);
  r.recv = e.ts_recv;
  if (e.bid !== null && e.ask !== null) {
    r.tr.querySelector(".spread").textContent = decSub(e.ask, e.bid);
    const inst = state.instruments.get(key(e.venue, e.symbol));
    if (inst && !inst.streams.includes("trade")) { // a quote-driven instrument (FX): the mid is its price
      const mid = String((Number(e.bid) + Number(e.ask)) / 2);
      onPrice(e, mid, null);
    }
  }
}
setInterval(() => { // tick ages count up locally; no request is made
  const now = Date.now() * 1e6;
  for (const r of state.rows.values()) {
    if (!r.recv) continue;
    const age = (now - r.recv) / 1e9;
    const cell = r.tr.querySelector(".age");
    cell.textContent = age < 1 ? "<1s" : age < 120 ? `${age.toFixed(0)}s` : `${(age / 60).toFixed(0)}m`;
    cell.className = `age ${age > 60 ? "stale" : ""}`;
  }
  $("#clock").textContent = new Date().toISOString().slice(11, 19) + " UTC";
}, 1000);

// -- chart ----------------------------------------------------------------------------------------------
function makeChart() {
  const LC = window.LightweightCharts;
  const el = $("#chart");
  state.chart = LC.createChart(el, {
    autoSize: true, layout: { background: { color: "#171d24" }, textColor: "#d7dde4" },
    grid: { vertLines: { color: "#222b35" }, horzLines: { color: "#222b35" } },
    timeScale: { timeVisible: true, secondsVisible: true },
  });
  state.candles = state.chart.addSeries(LC.CandlestickSeries, {});
  state.line = state.chart.addSeries(LC.LineSeries, { lineWidth: 1, visible: false });
  state.volume = state.chart.addSeries(LC.HistogramSeries, { priceScaleId: "vol", priceFormat: { type: "volume" } });
  state.chart.priceScale("vol").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  let timer = null;
  state.chart.timeScale().subscribeVisibleTimeRangeChange((range) => {
    if (!range || state.ignoreRange > 0) return;
    clearTimeout(timer);
    timer = setTimeout(() => loadRange(range.from, range.to), 300);
  });
}
function points() { return Math.max(20, Math.floor($("#chart").clientWidth / 8)); }

async function select(venue, symbol) {
  state.selected = key(venue, symbol);
  for (const r of state.rows.values()) r.tr.classList.toggle("selected", r.tr.dataset.key === state.selected);
  $("#chart-title").textContent = `${venue} ${symbol}`;
  const now = Date.now() / 1000;
  await loadRange(now - 86400, now, true);
}

async function loadRange(from, to, fit = false) {
  if (!state.selected) return;
  const [venue, symbol] = state.selected.split(/:(.*)/s);
  const seq = ++state.reqSeq;
  // whole seconds around the visible range, at least one wide (zoomed onto one bar the chart can report from === to)
  const lo = Math.floor(from), hi = Math.max(Math.ceil(to), lo + 1);
  const q = `venue=${venue}&symbol=${encodeURIComponent(symbol)}&points=${points()}&from=${lo}&to=${hi}`;
  const { ok, doc } = await api("GET", `/api/candles?${q}`);
  if (!ok || seq !== state.reqSeq) return;
  state.resolution = doc.resolution;
  $("#resolution").textContent = doc.resolution;
  state.ignoreRange++;
  try {
    if (doc.resolution === "tick") {
      const pts = uniqueTimes(doc.ticks.filter((t) => t.price !== null).map((t) => ({ time: t.time, value: Number(t.price) })));
      state.candles.setData([]); state.volume.setData([]);
      state.line.applyOptions({ visible: true }); state.line.setData(pts);
      state.bars = pts;
    } else {
      state.line.applyOptions({ visible: false }); state.line.setData([]);
      state.bars = doc.candles.map((c) => ({ time: c.time, open: +c.open, high: +c.high, low: +c.low, close: +c.close,
                                             volume: c.volume === null ? 0 : +c.volume }));
      state.candles.setData(state.bars.map(({ volume, ...b }) => b));
      state.volume.setData(state.bars.map((b) => ({ time: b.time, value: b.volume, color: b.close >= b.open ? "#26a69a80" : "#ef535080" })));
    }
    if (fit) state.chart.timeScale().fitContent();
    else if (state.bars.length) state.chart.timeScale().setVisibleRange({ from, to });
  } finally {
    // the chart reports the range changes our own setData/fit/setVisibleRange cause on its next animation frames,
    // not at once: stop ignoring after two frames (a fixed 50 ms ran out first on a busy machine, and the chart's
    // in-between range, weeks wide, was then loaded as if the user had zoomed out)
    requestAnimationFrame(() => requestAnimationFrame(() => { state.ignoreRange--; }));
  }
}
function uniqueTimes(pts) { // the chart needs strictly increasing times: ticks in one millisecond are nudged apart
  let prev = -Infinity;
  return pts.map((p) => { const t = Math.max(Math.round(p.time * 1000) / 1000, prev + 0.001); prev = t; return { ...p, time: t }; });
}
function liveBar(tsEvent, priceText, sizeText) { // the live candle (or tick line) updates in place
  const price = Number(priceText), t = tsEvent / 1e9;
  if (state.resolution === "tick") {
    const last = state.bars[state.bars.length - 1];
    const time = last && t <= last.time ? last.time + 0.001 : Math.round(t * 1000) / 1000;
    const pt = { time, value: price }; state.bars.push(pt); state.line.update(pt);
    return;
  }
  const w = WIDTHS[state.resolution]; if (!w) return;
  const bucket = state.resolution === "1w" ? Math.floor((t - 345600) / w) * w + 345600 : Math.floor(t / w) * w;
  let bar = state.bars[state.bars.length - 1];
  if (bar && bucket < bar.time) return; // older than the chart's last bar
  if (!bar || bucket > bar.time) { bar = { time: bucket, open: price, high: price, low: price, close: price, volume: 0 }; state.bars.push(bar); }
  bar.high = Math.max(bar.high, price); bar.low = Math.min(bar.low, price); bar.close = price;
  bar.volume += sizeText ? Number(sizeText) : 0;
  const { volume, ...ohlc } = bar;
  state.candles.update(ohlc);
  state.volume.update({ time: bar.time, value: volume, color: bar.close >= bar.open ? "#26a69a80" : "#ef535080" });
}

// -- settings -------------------------------------------------------------------------------------------
async function loadInstruments() {
  const { ok, doc } = await api("GET", "/api/instruments");
  if (!ok) return;
  const tbody = $("#instruments tbody"); tbody.innerHTML = "";
  for (const inst of doc.instruments) {
    const k = key(inst.venue, inst.symbol);
    const known = state.instruments.get(k);
    state.instruments.set(k, inst);
    if (inst.enabled) { row(inst.venue, inst.symbol); if (!known || !known.enabled) subscribe(inst); }
    const tr = document.createElement("tr");
    tr.dataset.key = k;
    tr.innerHTML = `<td>${inst.venue} ${inst.symbol}</td><td>${inst.channels.join(",")}</td><td>${inst.enabled ? "enabled" : "disabled"}</td><td></td>`;
    if (inst.source === "registry") {
      const path = `/api/instruments/${inst.venue}/${encodeURIComponent(inst.symbol.replace("/", "-"))}`;
      const act = tr.lastElementChild;
      act.append(button(inst.enabled ? "disable" : "enable", () => change("POST", `${path}/${inst.enabled ? "disable" : "enable"}`)),
                 button("remove", () => change("DELETE", path)));
    }
    tbody.appendChild(tr);
  }
  const live = new Set(doc.instruments.filter((i) => i.enabled).map((i) => key(i.venue, i.symbol)));
  for (const [k, r] of state.rows) { // removed or disabled: off the watchlist, and stop its stream
    if (live.has(k)) continue;
    const [venue, symbol] = k.split(/:(.*)/s);
    send({ op: "unsubscribe", venue, symbol, channels: ["trade", "quote"].filter((c) => (state.instruments.get(k)?.streams || []).includes(c)) });
    r.tr.remove(); state.rows.delete(k);
    if (!doc.instruments.some((i) => key(i.venue, i.symbol) === k)) state.instruments.delete(k);
  }
  if (!state.selected && doc.instruments.length) select(doc.instruments[0].venue, doc.instruments[0].symbol);
}
function button(text, fn) { const b = document.createElement("button"); b.type = "button"; b.textContent = text; b.onclick = fn; return b; }
async function change(method, path) {
  const { ok, doc } = await api(method, path);
  showError("_form", ok ? "" : doc.error);
  await loadInstruments();
}
function showError(field, text) {
  const el = document.querySelector(`#add-form .error[data-field="${field}"]`) || document.querySelector('#add-form .error[data-field="_form"]');
  el.textContent = text || "";
}
$("#add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  for (const el of f.querySelectorAll(".error")) el.textContent = "";
  const symbols = f.symbols.value.split(",").map((s) => s.trim()).filter(Boolean);
  const channels = f.channels.value.split(",").map((s) => s.trim()).filter(Boolean);
  const body = { venue: f.venue.value, symbols, channels: channels.length ? channels : null };
  const { ok, doc } = await api("POST", "/api/instruments", body);
  if (!ok) { showError(doc.field || "_form", doc.error); return; }
  f.symbols.value = "";
  await loadInstruments();
});
$("#token").addEventListener("change", (ev) => { state.token = ev.target.value.trim(); sessionStorage.setItem("pulse.token", state.token); });

// -- health and activity --------------------------------------------------------------------------------
async function loadHealth() { // pipeline health is a report, refreshed every 10 s (prices never poll)
  const { ok, doc } = await api("GET", "/api/status");
  if (ok) {
    $("#health").textContent = doc.lines.join("\n");
    const h = $("#healthy"); h.textContent = doc.healthy ? "healthy" : "unhealthy"; h.className = `badge ${doc.healthy ? "ok" : "bad"}`;
    const g = doc.gateway;
    $("#gateway").textContent = `gateway: ${g.clients} clients, ${g.readers} readers, ${g.events_in} events in, ${g.delivered} delivered, ${g.conflated} conflated, ${g.slow_closed} slow clients closed`;
  }
  setTimeout(loadHealth, 10000);
}
function addItem(sel, text) {
  const li = document.createElement("li"); li.textContent = text;
  const ul = $(sel); ul.prepend(li);
  while (ul.children.length > 50) ul.lastElementChild.remove();
}
function fillText(e) { return `${fmtTime(e.ts)} ${e.account} ${e.venue} ${e.symbol} ${e.side} ${e.quantity} @ ${e.price} (${e.status})`; }
function fmtTime(ns) { return ns ? new Date(ns / 1e6).toISOString().slice(11, 19) : ""; }
async function loadActivity() {
  const a = await api("GET", "/api/alerts?limit=20");
  if (a.ok) for (const x of a.doc.alerts.slice().reverse()) addItem("#alerts", `${fmtTime(x.ts_event)} ${x.venue} ${x.symbol}: ${x.message}`);
  const o = await api("GET", "/api/orders");
  if (o.ok) for (const x of o.doc.orders.slice(-20)) if (x.kind === "fill") addItem("#fills", fillText(x));
}

// -- start ----------------------------------------------------------------------------------------------
(function start() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { sessionStorage.setItem("pulse.token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  state.token = sessionStorage.getItem("pulse.token") || "";
  $("#token").value = state.token;
  makeChart();
  loadInstruments().then(connect);
  loadHealth();
  loadActivity();
})();
