// rtmpserver dashboard: polls the JSON API, draws streams, plays them, calls /control.
// Everything a client chose (stream names, addresses, flashVer) is put in the page as text
// (textContent), never as markup.  The token lives in this page's memory only.
"use strict";

const REFRESH_MS = 2000;
const HISTORY = 150; // bitrate samples kept per stream: five minutes at REFRESH_MS

const state = {
  token: "",
  streams: new Map(), // "app/name" -> {data, history: [[t, bits/s]], el}
  clients: [],
  updates: 0,
  lastError: null,
  player: null, // {key, via, impl, started}
};
window.dashboard = state; // for the operator's console and the end-to-end test

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function headers() {
  return state.token ? {authorization: "Bearer " + state.token} : {};
}

async function api(path, options) {
  const r = await fetch(path, Object.assign({headers: headers(), cache: "no-store"}, options || {}));
  if (r.status === 401) throw new Error("token required (or wrong)");
  if (!r.ok) throw new Error(path + ": HTTP " + r.status + " " + (await r.text()).trim());
  return r;
}

// -- formatting --------------------------------------------------------------------------------

function bits(v) {
  if (!(v > 0)) return "0 b/s";
  const units = ["b/s", "kb/s", "Mb/s", "Gb/s"];
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return v.toFixed(v < 10 ? 2 : 1) + " " + units[i];
}

function bytes(v) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return (i ? v.toFixed(1) : v) + " " + units[i];
}

function duration(s) {
  s = Math.floor(s || 0);
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  return (h ? h + "h" : "") + (h || m ? m + "m" : "") + sec + "s";
}

// -- drawing -----------------------------------------------------------------------------------

function graph(history) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "graph");
  svg.setAttribute("viewBox", "0 0 " + HISTORY + " 100");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...history.map((p) => p[1]));
  const line = document.createElementNS(ns, "polyline");
  const offset = HISTORY - history.length;
  line.setAttribute("points", history.map((p, i) => (offset + i) + "," + (100 - 95 * p[1] / max).toFixed(1)).join(" "));
  svg.append(line);
  const title = document.createElementNS(ns, "title");
  title.textContent = "input bitrate, last " + Math.round(HISTORY * REFRESH_MS / 60000) + " minutes (peak " + bits(max) + ")";
  svg.append(title);
  return svg;
}

function fact(label, value) {
  return el("div", null, el("span", null, label), value === undefined || value === null || value === "" ? "–" : value);
}

function videoText(v) {
  if (!v || !v.codec) return null;
  return [v.codec, v.profile, v.level ? "L" + v.level : null].filter(Boolean).join(" ");
}

function audioText(a) {
  if (!a || !a.codec) return null;
  return [a.codec, a.profile, a.sample_rate ? a.sample_rate + " Hz" : null, a.channels ? a.channels + " ch" : null]
    .filter(Boolean).join(" ");
}

function streamCard(key, s) {
  const st = s.data;
  const v = (st.meta && st.meta.video) || {};
  const a = (st.meta && st.meta.audio) || {};
  const players = state.clients.filter((c) => c.app === st.app && (c.streams || []).includes(st.name) && c.role !== "publisher");
  const pub = st.publisher;
  const card = el("article", {class: "stream", "data-key": key},
    el("h2", null, key, el("span", {class: "muted"}, st.active ? "live " + duration(st.uptime) : "idle")),
    el("div", {class: "facts"},
      fact("video", videoText(v)),
      fact("size", v.width && v.height ? v.width + "×" + v.height : null),
      fact("fps", v.frame_rate ? Number(v.frame_rate).toFixed(2).replace(/\.00$/, "") : null),
      fact("audio", audioText(a)),
      fact("bitrate", bits(st.bw_in)),
      fact("received", bytes(st.bytes_in)),
      fact("sent", bytes(st.bytes_out)),
      fact("viewers", String(st.players)),
      fact("publisher", pub ? pub.address + " (" + pub.protocol + ")" : (st.relayed_in ? "relay" : null)),
      fact("dropped / resyncs", el("span", {class: st.dropped ? "bad" : ""}, st.dropped + " / " + st.resyncs)),
      fact("recording", st.recordings && st.recordings.length ? st.recordings.map((p) => p[p.length - 1] || "").join(", ") : "no"),
      fact("push relays", String(st.relays_out || 0)),
    ),
    graph(s.history),
  );
  if (players.length) {
    const rows = players.map((c) => el("tr", null,
      el("td", null, c.address), el("td", null, c.protocol), el("td", null, duration(c.time)),
      el("td", null, bytes(c.bytes_out)), el("td", {class: c.dropped ? "bad" : ""}, String(c.dropped || 0))));
    card.append(el("table", null,
      el("thead", null, el("tr", null, ...["viewer", "protocol", "time", "sent", "dropped"].map((h) => el("th", null, h)))),
      el("tbody", null, ...rows)));
  }
  const buttons = el("div", {class: "buttons"},
    el("button", {type: "button", onclick: () => play(st.app, st.name, "flv")}, "play HTTP-FLV"),
    el("button", {type: "button", onclick: () => play(st.app, st.name, "ws")}, "play WebSocket-FLV"),
    el("button", {type: "button", onclick: () => play(st.app, st.name, "hls")}, "play HLS"));
  if (state.token) {
    // /control always needs the token (the server refuses control without one), so the buttons
    // appear once the operator has entered it.
    buttons.append(
      el("button", {type: "button", onclick: () => control("record/start", st)}, "record"),
      el("button", {type: "button", onclick: () => control("record/stop", st)}, "stop recording"),
      el("button", {type: "button", onclick: () => control("drop/publisher", st)}, "drop publisher"));
  }
  card.append(buttons);
  return card;
}

function render() {
  const box = $("streams");
  box.replaceChildren();
  if (!state.streams.size) box.append(el("p", {class: "muted"}, "no live streams"));
  for (const [key, s] of [...state.streams.entries()].sort()) {
    s.el = streamCard(key, s);
    box.append(s.el);
  }
}

// -- polling -----------------------------------------------------------------------------------

async function refresh() {
  try {
    const [streams, clients] = await Promise.all([
      api("api/v1/streams").then((r) => r.json()),
      api("api/v1/clients").then((r) => r.json()),
    ]);
    const now = Date.now();
    const seen = new Set();
    for (const st of streams.streams) {
      const key = st.app + "/" + st.name;
      seen.add(key);
      let s = state.streams.get(key);
      if (!s) state.streams.set(key, s = {history: []});
      s.data = st;
      s.history.push([now, st.bw_in || 0]);
      if (s.history.length > HISTORY) s.history.splice(0, s.history.length - HISTORY);
    }
    for (const key of [...state.streams.keys()]) if (!seen.has(key)) state.streams.delete(key);
    state.clients = clients.clients;
    state.updates++;
    state.lastError = null;
    $("status").textContent = "updated " + new Date(now).toLocaleTimeString() + " · " + clients.clients.length + " clients";
    $("status").className = "muted";
    render();
  } catch (e) {
    state.lastError = String(e.message || e);
    $("status").textContent = state.lastError;
    $("status").className = "error";
  }
}

// -- control -----------------------------------------------------------------------------------

async function control(action, st) {
  const q = new URLSearchParams({app: st.app, name: st.name});
  try {
    const r = await api("control/" + action + "?" + q, {method: "POST"});
    $("status").textContent = action + ": " + ((await r.text()).trim() || "done");
    $("status").className = "muted";
  } catch (e) {
    $("status").textContent = action + ": " + (e.message || e);
    $("status").className = "error";
  }
  refresh();
}

// -- player ------------------------------------------------------------------------------------

function stopPlayer() {
  const p = state.player;
  if (!p) return;
  try { p.impl.destroy(); } catch (e) { /* already gone */ }
  state.player = null;
  $("player-box").hidden = true;
}

function play(app, name, via) {
  stopPlayer();
  const video = $("player");
  const path = encodeURIComponent(app) + "/" + encodeURIComponent(name);
  const base = new URL(".", location.href);
  let impl, url;
  if (via === "hls") {
    url = new URL("hls/" + path + ".m3u8", base).href;
    impl = new Hls({lowLatencyMode: true});
    impl.loadSource(url);
    impl.attachMedia(video);
  } else {
    const u = new URL(path + ".flv", base);
    if (via === "ws") u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url = u.href;
    impl = mpegts.createPlayer({type: "flv", isLive: true, url}, {enableWorker: false, liveBufferLatencyChasing: true});
    impl.attachMediaElement(video);
    impl.load();
  }
  const p = {key: app + "/" + name, via, url, impl, errors: []};
  state.player = p;
  if (via === "hls") impl.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) p.errors.push(d.details); });
  else impl.on(mpegts.Events.ERROR, (type, detail) => p.errors.push(type + ": " + detail));
  video.play().catch((e) => p.errors.push("play(): " + e));
  $("player-title").textContent = p.key + " · " + {flv: "HTTP-FLV", ws: "WebSocket-FLV", hls: "HLS"}[via];
  $("player-box").hidden = false;
}

function playerInfo() {
  const p = state.player;
  if (!p) return;
  const video = $("player");
  const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : {};
  p.currentTime = video.currentTime;
  p.decodedFrames = q.totalVideoFrames || 0;
  p.droppedFrames = q.droppedVideoFrames || 0;
  let behind = null;
  if (video.buffered.length) behind = video.buffered.end(video.buffered.length - 1) - video.currentTime;
  $("player-info").textContent = "time " + video.currentTime.toFixed(1) + " s · " + p.decodedFrames + " frames decoded, " +
    p.droppedFrames + " dropped" + (behind !== null ? " · " + behind.toFixed(2) + " s buffered" : "") +
    (p.errors.length ? " · " + p.errors[p.errors.length - 1] : "");
}

// -- start -------------------------------------------------------------------------------------

$("auth").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("token").value.trim();
  refresh();
});
$("player-stop").addEventListener("click", stopPlayer);
refresh();
setInterval(refresh, REFRESH_MS);
setInterval(playerInfo, 500);
// ?play=APP/NAME[&via=flv|ws|hls] starts a player at once (a link to one stream).
const wanted = new URLSearchParams(location.search).get("play");
if (wanted && wanted.includes("/")) {
  const i = wanted.indexOf("/");
  play(wanted.slice(0, i), wanted.slice(i + 1), new URLSearchParams(location.search).get("via") || "flv");
}
