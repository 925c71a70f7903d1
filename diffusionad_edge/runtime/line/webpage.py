"""The live page: one card per camera (MJPEG overlay, decision in large letters, FPS, OK/NG counts),
per-stage latency and the last NG frames. Plain HTML and a few lines of script that read ``/stats``
twice a second; nothing to download, so it works on a line without internet.

With review on (``INFO.review``), each NG thumbnail has "good part" / "confirmed defect" buttons and
each camera card "save current frame as good part"; a click sends ``POST /review`` and the answer
(the file saved, or why nothing was) is shown under the thumbnails."""

from __future__ import annotations

import html
import json
from typing import Any

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>dae live: __TITLE__</title>
<style>
body { font-family: sans-serif; background: #111; color: #eee; margin: 1em; }
h1 { font-size: 1.1em; font-weight: normal; color: #aaa; margin: 0 0 .6em 0; }
#cameras { display: flex; flex-wrap: wrap; gap: 1em; }
.card { background: #1c1c1c; padding: .6em; border-radius: 6px; }
.card img.stream { display: block; max-width: 640px; width: 100%; min-width: 240px; background: #000; }
.decision { font-size: 4em; font-weight: bold; line-height: 1.1; }
.OK { color: #2ecc40; } .NG { color: #ff4136; } .none { color: #888; }
.line { color: #ccc; margin: .2em 0; }
table { border-collapse: collapse; margin-top: .6em; } td, th { padding: .1em .6em; text-align: right; }
#thumbs { display: flex; flex-wrap: wrap; gap: .4em; margin-top: .4em; } #thumbs figure { margin: 0; font-size: .8em; color: #aaa; }
button { font-size: .9em; margin: .2em .2em 0 0; padding: .3em .6em; border-radius: 4px; border: 1px solid #555;
         background: #2a2a2a; color: #eee; cursor: pointer; }
button.good { border-color: #2ecc40; } button.defect { border-color: #ff4136; } button:disabled { opacity: .4; cursor: default; }
.reviewed { color: #ddd; } #review-msg { margin: .4em 0; color: #ccc; min-height: 1.2em; } #review-msg.error { color: #ff851b; }
</style></head>
<body>
<h1>__TITLE__</h1>
<div id="cameras"></div>
<table id="latency"><tr><th>stage</th><th>p50 ms</th><th>p95 ms</th></tr></table>
<div class="line" id="extra"></div>
<h1>last NG frames</h1><div id="review-msg"></div><div id="thumbs"></div>
<script>
const INFO = __INFO__;
const token = new URLSearchParams(location.search).get("token");
const q = (p) => token ? p + (p.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : p;
const cards = {};
function card(name) {
  if (cards[name]) return cards[name];
  const div = document.createElement("div");
  div.className = "card";
  div.innerHTML = '<div class="line name"></div><div class="decision none">--</div><img class="stream" alt="live overlay">'
    + '<div class="line counts"></div>'
    + (INFO.review ? '<button class="good save-current">save current frame as good part</button>' : '');
  div.querySelector(".name").textContent = name;
  if (INFO.review) {
    const b = div.querySelector(".save-current");
    b.id = "save-current-" + name;
    b.onclick = () => review({camera: name, verdict: "good"});
  }
  div.querySelector(".decision").id = "decision-" + name;
  div.querySelector("img").id = "stream-" + name;
  div.querySelector("img").src = q("/stream.mjpg?camera=" + encodeURIComponent(name));
  document.getElementById("cameras").appendChild(div);
  return cards[name] = div;
}
const LABEL = {good: "good part", defect: "confirmed defect"};
const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
async function review(body) {
  const msg = document.getElementById("review-msg");
  try {
    const r = await fetch(q("/review"), {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    const a = await r.json();
    msg.className = r.ok ? "" : "error";
    msg.textContent = r.ok ? "saved as " + LABEL[a.verdict] + ": " + a.saved : "not saved: " + a.error;
  } catch (e) {
    msg.className = "error";
    msg.textContent = "not saved: the run cannot be reached (" + e + ")";
  }
  lastThumbs = "";  // show the thumbnail as reviewed on the next refresh
  refresh();
}
function thumbHtml(t) {
  let h = '<figure id="thumb-' + t.id + '"><img src="' + q("/thumb/" + t.id + ".jpg") + '"><figcaption>' + esc(t.camera) + " #" + t.frame
    + " " + t.score.toFixed(3) + "</figcaption>";
  if (INFO.review) {
    if (t.reviewed) h += '<div class="reviewed">reviewed: ' + LABEL[t.reviewed] + "</div>";
    else h += '<button class="good" data-thumb="' + t.id + '" data-verdict="good">good part</button>'
      + '<button class="defect" data-thumb="' + t.id + '" data-verdict="defect">confirmed defect</button>';
  }
  return h + "</figure>";
}
document.getElementById("thumbs").addEventListener("click", (e) => {
  const b = e.target.closest("button[data-thumb]");
  if (!b) return;
  for (const x of b.parentElement.querySelectorAll("button")) x.disabled = true;
  review({thumbnail: Number(b.dataset.thumb), verdict: b.dataset.verdict});
});
let lastThumbs = "";
async function refresh() {
  try {
    const s = await (await fetch(q("/stats"), {cache: "no-store"})).json();
    for (const [name, c] of Object.entries(s.cameras)) {
      const div = card(name);
      const d = div.querySelector(".decision");
      d.textContent = c.decision || "--";
      d.className = "decision " + (c.decision || "none");
      div.querySelector(".counts").textContent = c.fps.toFixed(1) + " FPS   OK " + c.ok + "   NG " + c.ng
        + (c.score == null ? "" : "   score " + c.score.toFixed(3)) + (c.status === "running" ? "" : "   (" + c.status + ")");
    }
    const rows = Object.entries(s.latency_ms).map(([k, v]) => "<tr><td>" + k + "</td><td>" + v.p50.toFixed(1) + "</td><td>"
      + v.p95.toFixed(1) + "</td></tr>").join("");
    document.getElementById("latency").innerHTML = "<tr><th>stage</th><th>p50 ms</th><th>p95 ms</th></tr>" + rows;
    const extra = [];
    if (s.mqtt) extra.push("MQTT " + (s.mqtt.connected ? "connected" : "disconnected") + ", " + s.mqtt.published
      + " published, " + s.mqtt.queued + " queued, " + s.mqtt.dropped + " dropped");
    if (s.requests) extra.push(s.requests.total + " requests");
    if (s.review) extra.push("reviewed: " + s.review.good + " good, " + s.review.defect + " defect"
      + (s.review.refused ? ", " + s.review.refused + " refused" : "") + " (" + s.review.dir + ")");
    document.getElementById("extra").textContent = extra.join("   ");
    const ids = s.ng_thumbnails.map(t => t.id + (t.reviewed || "")).join(",");
    if (ids !== lastThumbs) {
      lastThumbs = ids;
      document.getElementById("thumbs").innerHTML = s.ng_thumbnails.map(thumbHtml).join("");
    }
  } catch (e) { /* the run ended or the network blinked: try again */ }
}
setInterval(refresh, 500);
refresh();
</script>
</body></html>
"""


def page(info: dict[str, Any]) -> str:
    """The live page for a run whose model is described by ``info`` (name, backend, thresholds)."""
    title = " ".join(str(info.get(k)) for k in ("model", "backend", "precision") if info.get(k))
    return _PAGE.replace("__TITLE__", html.escape(title or "dae")).replace("__INFO__", json.dumps(info).replace("</", "<\\/"))
