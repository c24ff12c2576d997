// tether dashboard: draws the charts a page carries as JSON, keeps them drawn across htmx swaps, copies
// commands, confirms actions, and verifies audit inclusion proofs in the browser (RFC 9162, SHA-256).
(function () {
  "use strict";
  var COLORS = ["#2f6fde", "#9aa4ad", "#2e7d32", "#b26a00", "#7b3fb5", "#00838f", "#c2185b"];

  function draw(el) {
    var src = document.getElementById(el.dataset.chart);
    if (!src || !window.uPlot) return;
    var spec = JSON.parse(src.textContent);
    el.innerHTML = "";
    var points = 0;
    spec.series.forEach(function (s) { if (!s.ref) s.values.forEach(function (v) { if (v !== null) points++; }); });
    el.dataset.points = String(points);
    if (!spec.x.length || !points) {
      el.innerHTML = '<div class="empty">' + (spec.empty || "no data yet") + "</div>";
      return;
    }
    var series = [{ label: spec.xlabel || "time", value: spec.time === false ? null : "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}" }];
    spec.series.forEach(function (s, i) {
      series.push({
        label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: s.width || 2,
        dash: s.dash ? [6, 4] : undefined, points: { show: spec.x.length < 40 }, spanGaps: false,
        paths: s.bars ? uPlot.paths.bars({ size: [0.42, 40], align: s.label === "baseline" ? -1 : 1 })
             : s.steps ? uPlot.paths.stepped({ align: 1 }) : undefined,
        fill: s.bars ? (s.color || COLORS[i % COLORS.length]) : undefined,
      });
    });
    var width = Math.max(260, el.clientWidth || 600);
    // One x value, or one y value across every series: uPlot's own padding of a flat range spans years of time
    // and 0-100 of a rate (seen on a rollout's first point), so such ranges are set here, around the value.
    var xs = spec.x.filter(function (v) { return v !== null; });
    var xlo = Math.min.apply(null, xs), xhi = Math.max.apply(null, xs);
    var pad = spec.time === false ? 1 : 30;
    var scales = { x: { time: spec.time !== false, auto: xlo !== xhi, range: xlo === xhi ? [xlo - pad, xhi + pad] : undefined } };
    var ys = [];
    spec.series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null) ys.push(v); }); });
    var ylo = Math.min.apply(null, ys), yhi = Math.max.apply(null, ys);
    if (ylo === yhi) {
      var spread = Math.abs(ylo) * 0.5 || 1;
      scales.y = { auto: false, range: [ylo >= 0 && ylo - spread < 0 ? 0 : ylo - spread, yhi + spread] };
    }
    var opts = {
      title: spec.title, width: width, height: spec.height || 220, series: series, scales: scales,
      axes: [spec.labels ? { values: function (u, vals) { return vals.map(function (v) { return spec.labels[v] || ""; }); } } : {},
             { label: spec.ylabel || "", size: 60 }],
      legend: { live: true },
    };
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    el._plot = new uPlot(opts, data, el);
  }

  function drawAll(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(function (el) {
      try { draw(el); } catch (err) { el.dataset.error = String(err); el.textContent = "chart error: " + err; }
    });
  }

  function hex(buf) {
    return Array.prototype.map.call(new Uint8Array(buf), function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function bytes(h) {
    var out = new Uint8Array(h.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(h.substr(i * 2, 2), 16);
    return out;
  }
  function node(left, right) {
    var buf = new Uint8Array(1 + left.length + right.length);
    buf[0] = 1; buf.set(left, 1); buf.set(right, 1 + left.length);
    return crypto.subtle.digest("SHA-256", buf).then(function (d) { return new Uint8Array(d); });
  }
  // RFC 9162 section 2.1.3.2: verify an inclusion proof for leaf `index` in a tree of `size` leaves.
  async function verifyInclusion(index, size, leafHex, proof, rootHex) {
    if (index >= size) return false;
    var fn = index, sn = size - 1, r = bytes(leafHex);
    for (var i = 0; i < proof.length; i++) {
      var p = bytes(proof[i]);
      if (sn === 0) return false;
      if ((fn & 1) === 1 || fn === sn) {
        r = await node(p, r);
        if ((fn & 1) === 0) { while ((fn & 1) === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); } }
      } else {
        r = await node(r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 && hex(r) === rootHex;
  }

  function proofs(root) {
    (root || document).querySelectorAll("[data-proof]").forEach(function (el) {
      var d = JSON.parse(document.getElementById(el.dataset.proof).textContent);
      if (!window.crypto || !crypto.subtle) { el.textContent = "this browser cannot hash (needs a secure context)"; return; }
      verifyInclusion(d.index, d.size, d.leaf, d.proof, d.root).then(function (ok) {
        el.textContent = ok ? "verified in this browser: the record's leaf and the proof hash to the signed root"
                            : "FAILED in this browser: the proof does not lead to the signed root";
        el.className = ok ? "good" : "bad";
        el.dataset.verified = ok ? "yes" : "no";
      });
    });
  }

  document.addEventListener("click", function (e) {
    var t = e.target.closest("[data-copy]");
    if (!t) return;
    var text = t.dataset.copy;
    if (navigator.clipboard) navigator.clipboard.writeText(text).catch(function () {});
    t.classList.add("copied");
    setTimeout(function () { t.classList.remove("copied"); }, 1500);
  });
  document.addEventListener("submit", function (e) {
    var f = e.target;
    if (f.dataset.confirm && !window.confirm(f.dataset.confirm)) e.preventDefault();
  });
  document.addEventListener("DOMContentLoaded", function () { drawAll(); proofs(); });
  document.addEventListener("htmx:afterSwap", function (e) { drawAll(e.target); proofs(e.target); });
  var resizing;
  window.addEventListener("resize", function () { clearTimeout(resizing); resizing = setTimeout(drawAll, 200); });
  window.tether = { verifyInclusion: verifyInclusion, drawAll: drawAll };
})();
