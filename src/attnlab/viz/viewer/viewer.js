// The attention viewer's script. attnlab.viz.html inlines this file as it is into the written
// page and allows it, and only it, by its SHA-256 in the page's Content-Security-Policy.
// It reads the maps from the attn-data JSON block and shows tokens with textContent only.
"use strict";
(function () {
  var DATA = JSON.parse(document.getElementById("attn-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var SVGNS = document.getElementById("lines").namespaceURI;  // the <svg> markup sets it
  var state = { view: 0, layer: 0, head: "mean", scale: "max", hover: null, cell: null,
    query: 0, peek: null };  // query / peek: the chosen and the hovered token (patch maps)

  function fail(message) { var e = $("error"); e.textContent = message; e.hidden = false; }
  function view() { return DATA.views[state.view]; }
  function nLayers(v) { return v.weights.length; }
  function nHeads(v) { return v.weights.length ? v.weights[0].length : 0; }
  // layers and heads are counted from 1; a view holding a selection lists their numbers
  function layerName(v, l) { return "layer " + (v.layers ? v.layers[l] : l + 1); }
  function headName(v, h) { return "head " + (v.heads ? v.heads[h] : h + 1); }

  var meanCache = {};
  function matrix() {  // (T, S) for the chosen layer and head, or the mean of heads
    var layer = view().weights[state.layer], key = state.view + "/" + state.layer;
    if (state.head !== "mean") { return layer[state.head]; }
    if (!meanCache[key]) { meanCache[key] = meanOfHeads(layer); }
    return meanCache[key];  // hovering redraws often; the mean is computed once per layer
  }
  function meanOfHeads(layer) {
    var H = layer.length, T = layer[0].length, S = T ? layer[0][0].length : 0, out = [];
    for (var t = 0; t < T; t++) {
      var row = new Array(S).fill(0);
      for (var h = 0; h < H; h++) {
        for (var s = 0; s < S; s++) { row[s] += layer[h][t][s] / H; }
      }
      out.push(row);
    }
    return out;
  }
  function scaleMax(m) {
    if (state.scale === "one") { return 1; }
    var best = 0;
    m.forEach(function (row) { row.forEach(function (w) { if (w > best) best = w; }); });
    return best > 0 ? best : 1;
  }
  function colour(x) {  // x in [0, 1] -> the viridis colour the PNG heatmaps use
    var c = DATA.colormap, i = Math.round(Math.min(1, Math.max(0, x)) * (c.length - 1));
    return c[i];
  }

  function fillSelect(select, items, value) {
    select.replaceChildren();
    items.forEach(function (item) {
      var option = document.createElement("option");
      option.value = String(item[0]);
      option.textContent = item[1];
      select.appendChild(option);
    });
    select.value = String(value);
  }
  function syncControls() {
    var v = view(), L = nLayers(v), H = nHeads(v), layers = [], heads = [["mean", "mean of heads"]];
    if (state.layer >= L) { state.layer = L - 1; }
    if (state.head !== "mean" && state.head >= H) { state.head = "mean"; }
    // layers and heads are counted from 1, as `attnlab viz` and `attnlab heads` name them
    for (var l = 0; l < L; l++) { layers.push([l, layerName(v, l)]); }
    for (var h = 0; h < H; h++) { heads.push([h, headName(v, h)]); }
    fillSelect($("layer-select"), layers, state.layer);
    fillSelect($("head-select"), heads, state.head);
    $("view-select").value = String(state.view);
  }

  // ---- heatmap (canvas) ----
  var geometry = null;
  function label(text, max) { return text.length > max ? text.slice(0, max - 1) + "\u2026" : text; }
  function drawHeatmap(m, top) {
    var v = view(), T = v.query_tokens.length, S = v.key_tokens.length;
    var canvas = $("heatmap"), ctx = canvas.getContext("2d");
    var cell = Math.max(3, Math.min(28, Math.floor(560 / Math.max(T, S, 1))));
    var font = Math.min(12, cell - 1), every = font < 7 ? Math.ceil(7 / cell) : 1;
    font = Math.max(font, 7);
    ctx.font = font + "px monospace";
    var widest = function (tokens) {
      return tokens.reduce(function (w, t) {
        return Math.max(w, ctx.measureText(label(t, 14)).width);
      }, 0);
    };
    var left = Math.ceil(widest(v.query_tokens)) + 8, bottom = Math.ceil(widest(v.key_tokens)) + 8;
    var width = left + S * cell + 4, height = T * cell + bottom + 4;
    var ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio);
    canvas.style.width = width + "px"; canvas.style.height = height + "px";
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, width, height);
    for (var t = 0; t < T; t++) {
      for (var s = 0; s < S; s++) {
        ctx.fillStyle = colour(m[t][s] / top);
        ctx.fillRect(left + s * cell, t * cell, cell, cell);
      }
    }
    ctx.font = font + "px monospace"; ctx.fillStyle = "#222";
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (t = 0; t < T; t += every) {
      ctx.fillText(label(v.query_tokens[t], 14), left - 4, t * cell + cell / 2);
    }
    for (s = 0; s < S; s += every) {
      ctx.save(); ctx.translate(left + s * cell + cell / 2, T * cell + 4); ctx.rotate(-Math.PI / 2);
      ctx.fillText(label(v.key_tokens[s], 14), 0, 0); ctx.restore();
    }
    ctx.strokeStyle = "#e07000"; ctx.lineWidth = 2;
    var h = state.hover;
    if (h && h.side === "q") { ctx.strokeRect(left, h.index * cell, S * cell, cell); }
    if (h && h.side === "k") { ctx.strokeRect(left + h.index * cell, 0, cell, T * cell); }
    if (state.cell) {
      ctx.strokeStyle = "#fff";
      ctx.strokeRect(left + state.cell[1] * cell, state.cell[0] * cell, cell, cell);
    }
    geometry = { left: left, cell: cell, T: T, S: S };
  }
  function showCell(m) {
    var v = view(), info = $("cell-info");
    if (!state.cell) { info.textContent = "\u00a0"; return; }
    var t = state.cell[0], s = state.cell[1];
    info.textContent = JSON.stringify(v.query_tokens[t]) + " \u2192 " +
      JSON.stringify(v.key_tokens[s]) + ": " + m[t][s].toFixed(4);
  }

  // ---- token view (bertviz-like) ----
  function buildTokens() {
    var v = view();
    [["q", "query-list", v.query_tokens], ["k", "key-list", v.key_tokens]].forEach(function (col) {
      var box = $(col[1]);
      box.replaceChildren();
      col[2].forEach(function (text, i) {
        var el = document.createElement("span");
        el.className = "tok"; el.tabIndex = 0; el.textContent = text;
        el.dataset.side = col[0]; el.dataset.index = String(i);
        el.addEventListener("mouseenter", function () { setHover({ side: col[0], index: i }); });
        el.addEventListener("focus", function () { setHover({ side: col[0], index: i }); });
        el.addEventListener("mouseleave", function () { setHover(null); });
        el.addEventListener("blur", function () { setHover(null); });
        box.appendChild(el);
      });
    });
  }
  function drawTokens(m, top) {
    var qs = $("query-list").children, ks = $("key-list").children, h = state.hover;
    var all = Array.prototype.slice.call(qs).concat(Array.prototype.slice.call(ks));
    all.forEach(function (el) {
      el.classList.remove("active", "top"); el.style.backgroundColor = ""; delete el.dataset.weight;
    });
    if (h) {
      var self = h.side === "q" ? qs[h.index] : ks[h.index], others = h.side === "q" ? ks : qs;
      var weights = [], best = -1;
      for (var i = 0; i < others.length; i++) {
        weights.push(h.side === "q" ? m[h.index][i] : m[i][h.index]);
        if (best < 0 || weights[i] > weights[best]) { best = i; }
      }
      self.classList.add("active");
      weights.forEach(function (w, i) {
        others[i].dataset.weight = w.toFixed(4);
        var alpha = Math.min(1, w / top).toFixed(3);
        others[i].style.backgroundColor = "rgba(224, 112, 0, " + alpha + ")";
      });
      if (best >= 0 && weights[best] > 0) { others[best].classList.add("top"); }
    }
    drawLines(m, top, qs, ks);
  }
  var LINES_PER_QUERY = 8;
  function strongest(row, k) {  // the k-th largest weight of a row (0 when the row is shorter)
    if (row.length <= k) { return 0; }
    return row.slice().sort(function (a, b) { return b - a; })[k - 1];
  }
  function drawLines(m, top, qs, ks) {
    var svg = $("lines"), box = $("token-view").getBoundingClientRect(), h = state.hover;
    var rect = svg.getBoundingClientRect(), width = rect.width;
    svg.setAttribute("height", String(Math.max(box.height, 1)));
    svg.replaceChildren();
    var y = function (els) {  // read every position before writing: one layout, not T * S
      return Array.prototype.map.call(els, function (el) {
        var r = el.getBoundingClientRect();
        return r.top + r.height / 2 - rect.top;
      });
    };
    var qy = y(qs), ky = y(ks), lines = document.createDocumentFragment();
    for (var t = 0; t < qs.length; t++) {
      if (h && h.side === "q" && h.index !== t) { continue; }
      // with nothing hovered, each query's strongest keys only: long inputs stay responsive
      var floor = h ? 0 : strongest(m[t], LINES_PER_QUERY);
      for (var s = 0; s < ks.length; s++) {
        if (h && h.side === "k" && h.index !== s) { continue; }
        var alpha = Math.min(1, m[t][s] / top);
        if (alpha < 0.02 || m[t][s] < floor) { continue; }
        var line = document.createElementNS(SVGNS, "line");
        line.setAttribute("x1", "2"); line.setAttribute("y1", qy[t].toFixed(1));
        line.setAttribute("x2", String(width - 2)); line.setAttribute("y2", ky[s].toFixed(1));
        line.setAttribute("stroke", h ? "#e07000" : "#2a6fb0");
        line.setAttribute("stroke-opacity", alpha.toFixed(3));
        line.setAttribute("stroke-width", h ? "2" : "1.5");
        lines.appendChild(line);
      }
    }
    svg.appendChild(lines);
  }

  // ---- legend ----
  function drawLegend(top) {
    var bar = $("legend-bar"), ctx = bar.getContext("2d");
    for (var x = 0; x < bar.width; x++) {
      ctx.fillStyle = colour(x / (bar.width - 1));
      ctx.fillRect(x, 0, 1, bar.height);
    }
    $("legend-min").textContent = "0";
    $("legend-max").textContent = top.toFixed(3);
    $("legend-label").textContent =
      state.head === "mean" ? "(mean of heads)" : "(" + headName(view(), state.head) + ")";
  }

  // ---- patches (ViT, DeiT, AST): the picture cut into its patches ----
  // Token prefix + i * grid[1] + j is patch (i, j): picture rows [i * stride[0], + patch[0])
  // and columns [j * stride[1], + patch[1]) in the model's order; a spectrogram is drawn
  // frequency up (flip_rows). A pixel under overlapping windows shows their mean weight.
  var P = DATA.patches || null, picture = null, patchGeometry = null, RGB = null;
  var HEAT_ALPHA = 0.55, HEATMAP_LIMIT = 256;  // tokens beyond which the matrix is not drawn
  function nPrefix() { return P.prefix.length; }
  function tokenName(k) { return view().key_tokens[k]; }
  function patchWindow(k) {  // token k (a patch) -> [top, left, rows, cols] as drawn
    var n = k - nPrefix(), i = Math.floor(n / P.grid[1]), j = n % P.grid[1];
    var top = i * P.stride[0];
    if (P.flip_rows) { top = P.size[0] - top - P.patch[0]; }
    return [top, j * P.stride[1], P.patch[0], P.patch[1]];
  }
  function patchHeat(row) {  // one query's weights over all tokens -> per pixel, NaN: no patch
    var R = P.size[0], C = P.size[1], sum = new Float64Array(R * C), count = new Uint8Array(R * C);
    for (var k = nPrefix(); k < row.length; k++) {
      var w = patchWindow(k);
      for (var r = w[0]; r < w[0] + w[2]; r++) {
        for (var c = w[1]; c < w[1] + w[3]; c++) { sum[r * C + c] += row[k]; count[r * C + c]++; }
      }
    }
    var heat = new Float64Array(R * C);
    for (var p = 0; p < R * C; p++) { heat[p] = count[p] ? sum[p] / count[p] : NaN; }
    return heat;
  }
  function patchAt(x, y) {  // a point on the canvas (CSS px) -> the patch token nearest to it
    var g = patchGeometry, R = P.size[0], C = P.size[1];
    if (!g || x < 0 || y < 0 || x >= g.width || y >= g.height) { return null; }
    var col = Math.min(C - 1, Math.floor(x / g.sx)), row = Math.min(R - 1, Math.floor(y / g.sy));
    if (P.flip_rows) { row = R - 1 - row; }
    var nearest = function (pixel, axis) {  // the window whose centre is closest
      var i = Math.round((pixel - (P.patch[axis] - 1) / 2) / P.stride[axis]);
      return Math.min(P.grid[axis] - 1, Math.max(0, i));
    };
    return nPrefix() + nearest(row, 0) * P.grid[1] + nearest(col, 1);
  }
  function patchCentre(k) {  // canvas point (CSS px) at the middle of patch token k
    var w = patchWindow(k), g = patchGeometry;
    return [(w[1] + w[3] / 2) * g.sx, (w[0] + w[2] / 2) * g.sy];
  }
  function shownQuery() { return state.peek !== null ? state.peek : state.query; }
  function buildPatches() {
    $("tokens-panel").hidden = true;
    $("patches-panel").hidden = false;
    // an AST of 1,214 tokens: 1.5M cells per hover; the patch view says it all
    $("heatmap-panel").hidden = DATA.views[0].key_tokens.length > HEATMAP_LIMIT;
    RGB = DATA.colormap.map(function (c) {
      return [1, 3, 5].map(function (i) { return parseInt(c.slice(i, i + 2), 16); });
    });
    var box = $("prefix-list");
    P.prefix.forEach(function (name, k) {
      var el = document.createElement("span");
      el.className = "cell"; el.tabIndex = 0; el.dataset.index = String(k);
      el.addEventListener("mouseenter", function () { state.peek = k; render(); });
      el.addEventListener("mouseleave", function () { state.peek = null; render(); });
      el.addEventListener("click", function () { state.query = k; render(); });
      el.addEventListener("focus", function () { state.query = k; render(); });
      box.appendChild(el);
    });
    var canvas = $("patch-canvas");
    var point = function (e) {
      var r = canvas.getBoundingClientRect();
      return patchAt(e.clientX - r.left, e.clientY - r.top);
    };
    canvas.addEventListener("mousemove", function (e) {
      var k = point(e);
      if (k !== state.peek) { state.peek = k; render(); }
    });
    canvas.addEventListener("mouseleave", function () { state.peek = null; render(); });
    canvas.addEventListener("click", function (e) {
      var k = point(e);
      if (k !== null) { state.query = k; render(); }
    });
    canvas.addEventListener("keydown", function (e) {
      var moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      if (!moves[e.key]) { return; }
      e.preventDefault();
      var n = Math.max(0, state.query - nPrefix()), d = moves[e.key];
      var i = Math.floor(n / P.grid[1]) + (P.flip_rows ? -d[0] : d[0]), j = n % P.grid[1] + d[1];
      i = Math.min(P.grid[0] - 1, Math.max(0, i)); j = Math.min(P.grid[1] - 1, Math.max(0, j));
      state.query = nPrefix() + i * P.grid[1] + j; state.peek = null; render();
    });
    var bytes = atob(P.png), data = new Uint8Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) { data[i] = bytes.charCodeAt(i); }
    createImageBitmap(new Blob([data], { type: "image/png" })).then(function (bitmap) {
      picture = bitmap; window.attnViewer.ready = true; render();
    }, function (err) { fail("the picture could not be decoded: " + err); });
  }
  function drawPatches(m) {
    var q = shownQuery(), row = m[q], R = P.size[0], C = P.size[1];
    var sx = Math.min(16, 560 / C), sy = Math.min(16, Math.max(sx, 200 / R));
    var width = Math.round(C * sx), height = Math.round(R * sy);
    var canvas = $("patch-canvas"), ctx = canvas.getContext("2d"), ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio);
    canvas.style.width = width + "px"; canvas.style.height = height + "px";
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = "#888"; ctx.fillRect(0, 0, width, height);
    if (picture) { ctx.drawImage(picture, 0, 0, width, height); }
    var keys = row.slice(nPrefix()), top = 0, best = nPrefix();
    keys.forEach(function (w, i) { if (w > top) { top = w; best = nPrefix() + i; } });
    top = state.scale === "one" || top <= 0 ? 1 : top;
    var heat = patchHeat(row), layer = document.createElement("canvas");
    layer.width = C; layer.height = R;
    var lctx = layer.getContext("2d"), img = lctx.createImageData(C, R);
    for (var p = 0; p < R * C; p++) {
      if (isNaN(heat[p])) { continue; }  // no patch covers it: the picture shows as it is
      var rgb = RGB[Math.round(Math.min(1, Math.max(0, heat[p] / top)) * (RGB.length - 1))];
      img.data[4 * p] = rgb[0]; img.data[4 * p + 1] = rgb[1]; img.data[4 * p + 2] = rgb[2];
      img.data[4 * p + 3] = Math.round(255 * HEAT_ALPHA);
    }
    lctx.putImageData(img, 0, 0);
    ctx.drawImage(layer, 0, 0, width, height);
    ctx.strokeStyle = "rgba(255, 255, 255, 0.35)"; ctx.lineWidth = 1; ctx.beginPath();
    for (var i = 0; i <= P.grid[0]; i++) {  // the grid the strides cut
      var y = (P.flip_rows ? R - i * P.stride[0] : i * P.stride[0]) * sy;
      ctx.moveTo(0, y); ctx.lineTo(width, y);
    }
    for (var j = 0; j <= P.grid[1]; j++) {
      ctx.moveTo(j * P.stride[1] * sx, 0); ctx.lineTo(j * P.stride[1] * sx, height);
    }
    ctx.stroke();
    patchGeometry = { sx: sx, sy: sy, width: width, height: height, query: q, top: top,
      best: best };
    var outline = function (k, colour, dash) {
      var w = patchWindow(k);
      ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.setLineDash(dash);
      ctx.strokeRect(w[1] * sx + 1, w[0] * sy + 1, w[3] * sx - 2, w[2] * sy - 2);
      ctx.setLineDash([]);
    };
    outline(best, "#fff", [4, 3]);
    if (q >= nPrefix()) { outline(q, "#e07000", []); }
    Array.prototype.forEach.call($("prefix-list").children, function (el, k) {
      el.textContent = P.prefix[k] + " " + row[k].toFixed(3);
      el.dataset.weight = row[k].toFixed(4);
      el.style.backgroundColor = "rgba(224, 112, 0, " + Math.min(1, row[k]).toFixed(3) + ")";
      el.classList.toggle("active", k === q);
    });
    var prefix = P.prefix.map(function (name, k) { return name + " " + row[k].toFixed(4); });
    $("patch-info").textContent = "query " + tokenName(q) + (state.peek !== null ? " (hover)" : "") +
      ": strongest patch " + tokenName(best) + " " + row[best].toFixed(4) + " \u00b7 " +
      prefix.join(", ") + " \u00b7 colour 0 to " + top.toFixed(3);
  }

  function render() {
    var v = view(), m = matrix(), top = scaleMax(m);
    $("subtitle").textContent = v.name + " \u00b7 " + layerName(v, state.layer) + " \u00b7 " +
      (state.head !== "mean" ? headName(v, state.head)
        : nHeads(v) === 1 ? "1 head" : "mean of " + nHeads(v) + " heads") +
      " \u00b7 " + v.query_tokens.length + " queries \u00d7 " + v.key_tokens.length + " keys";
    if (!$("heatmap-panel").hidden) { drawHeatmap(m, top); showCell(m); drawLegend(top); }
    if (P) { drawPatches(m); } else { drawTokens(m, top); }
  }
  function setHover(h) { state.hover = h; render(); }
  function setView(i) {
    state.view = i; state.hover = null; state.cell = null;
    syncControls(); if (!P) { buildTokens(); } render();
  }
  function setHead(h) { state.head = h; syncControls(); render(); }
  function setLayer(l) { state.layer = l; syncControls(); render(); }
  function step(kind, delta) {
    var v = view();
    if (kind === "layer") { setLayer((state.layer + delta + nLayers(v)) % nLayers(v)); return; }
    var order = ["mean"]; for (var i = 0; i < nHeads(v); i++) { order.push(i); }
    setHead(order[(order.indexOf(state.head) + delta + order.length) % order.length]);
  }

  function start() {
    if (!DATA.views || !DATA.views.length) { fail("no attention views in this file"); return; }
    $("title").textContent = DATA.title;
    document.title = DATA.title;
    fillSelect($("view-select"), DATA.views.map(function (v, i) {
      return [i, v.name + " (" + v.kind + ")"];
    }), 0);
    $("view-select").addEventListener("change", function (e) {
      setView(Number(e.target.value));
    });
    $("layer-select").addEventListener("change", function (e) {
      setLayer(Number(e.target.value));
    });
    $("head-select").addEventListener("change", function (e) {
      setHead(e.target.value === "mean" ? "mean" : Number(e.target.value));
    });
    $("scale-select").addEventListener("change", function (e) {
      state.scale = e.target.value; render();
    });
    var canvas = $("heatmap");
    canvas.addEventListener("mousemove", function (e) {
      if (!geometry) { return; }
      var r = canvas.getBoundingClientRect(), g = geometry;
      var s = Math.floor((e.clientX - r.left - g.left) / g.cell);
      var t = Math.floor((e.clientY - r.top) / g.cell);
      var cell = t >= 0 && t < g.T && s >= 0 && s < g.S ? [t, s] : null;
      if (String(cell) !== String(state.cell)) { state.cell = cell; render(); }
    });
    canvas.addEventListener("mouseleave", function () { state.cell = null; render(); });
    canvas.addEventListener("keydown", function (e) {
      var moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
      if (!moves[e.key] || !geometry) { return; }
      e.preventDefault();
      var c = state.cell || [0, 0], d = moves[e.key];
      state.cell = [Math.min(geometry.T - 1, Math.max(0, c[0] + d[0])),
                    Math.min(geometry.S - 1, Math.max(0, c[1] + d[1]))];
      render();
    });
    document.addEventListener("keydown", function (e) {
      if (e.target && e.target.tagName === "SELECT") { return; }
      var keys = { "[": ["head", -1], "]": ["head", 1], ",": ["layer", -1], ".": ["layer", 1] };
      if (keys[e.key]) { step(keys[e.key][0], keys[e.key][1]); }
    });
    window.addEventListener("resize", render);
    // read-only hook for tests and the console: the matrix drawn now; with patches, `ready`
    // turns true once the picture is decoded
    window.attnViewer = {
      state: state, matrix: matrix, geometry: function () { return geometry; }, ready: !P,
      patchGeometry: function () { return patchGeometry; }, patchCentre: patchCentre,
    };
    if (P) { buildPatches(); }
    setView(0);
  }
  try { start(); } catch (err) { fail("viewer failed: " + err.message); throw err; }
})();
