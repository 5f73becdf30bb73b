// The playground's script. attnlab.serve.playground inlines this file as it is into the page
// and allows it, and only it, by its SHA-256 in the page's Content-Security-Policy. It talks to
// this server only (connect-src 'self') and shows every text with textContent, never as markup.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { model: null, id: null, attention: null, layer: null, head: "mean",
    busy: false, attentionDraws: 0 };
  let controller = null;

  function showError(message) { $("error").textContent = message; $("error").hidden = false; }
  function clearError() { $("error").textContent = ""; $("error").hidden = true; }
  function setStatus(text) { $("status").textContent = text; }

  // an OpenAI error body {"error": {"message", "param", ...}} as one line
  function errorText(body, status) {
    const error = body && body.error;
    if (!error || !error.message) { return "the server answered HTTP " + status; }
    return error.message + (error.param ? " (" + error.param + ")" : "");
  }

  async function readJson(response, what) {
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) { throw new Error(what + ": " + errorText(body, response.status)); }
    return body;
  }

  async function loadModel() {
    try {
      const body = await readJson(await fetch("/v1/models"), "models");
      state.model = body.data[0].id;
      $("model-id").textContent = state.model;
    } catch (e) {
      $("model-id").textContent = "(unknown)";
      showError(e.message);
    }
  }

  // a number field as the request wants it; empty optional fields are left out
  function field(id, integer, optional) {
    const raw = $(id).value.trim();
    if (raw === "" && optional) { return undefined; }
    const value = Number(raw);
    if (raw === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
      throw new Error($(id).parentElement.textContent.trim() + " must be " +
        (integer ? "a whole number" : "a number") + ", got \u201c" + raw + "\u201d");
    }
    return value;
  }

  function requestBody() {
    const body = { model: state.model, prompt: $("prompt").value, stream: true,
      max_tokens: field("max-tokens", true), temperature: field("temperature", false),
      top_p: field("top-p", false), top_k: field("top-k", true) };
    const seed = field("seed", true, true);
    if (seed !== undefined) { body.seed = seed; }
    return body;
  }

  function setBusy(busy) {
    state.busy = busy;
    $("generate").disabled = busy;
    $("stop").disabled = !busy;
  }

  // reads the text/event-stream of a streamed completion: `data: {json}` lines, then
  // `data: [DONE]`; appends each chunk's text as it comes; returns [id, finish reason]
  async function readStream(response) {
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "", id = null, finish = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) { throw new Error("the stream ended before data: [DONE]"); }
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r?\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (!line.startsWith("data:")) { continue; }
        const data = line.slice(5).trim();
        if (data === "[DONE]") { reader.cancel().catch(() => {}); return [id, finish]; }
        const chunk = JSON.parse(data);
        if (chunk.error) { throw new Error(errorText(chunk, 500)); }
        id = chunk.id || id;
        const choice = chunk.choices && chunk.choices[0];
        if (choice) {
          $("output-text").textContent += choice.text || "";
          finish = choice.finish_reason || finish;
        }
      }
    }
  }

  async function generate() {
    if (state.busy) { return; }
    clearError();
    await modelReady;
    let body;
    try { body = requestBody(); } catch (e) { showError(e.message); return; }
    setBusy(true);
    $("output-prompt").textContent = body.prompt;
    $("output-text").textContent = "";
    $("attention").hidden = true;
    setStatus("writing\u2026");
    controller = new AbortController();
    try {
      const response = await fetch("/v1/completions", { method: "POST",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        signal: controller.signal });
      if (!response.ok) { await readJson(response, "completion"); }
      const [id, finish] = await readStream(response);
      state.id = id;
      setStatus("done (" + (finish === "length" ? "max tokens reached" : "stopped") + ")");
      if (id) { await loadAttention(id); }
    } catch (e) {
      if (e.name === "AbortError") { setStatus("stopped by you"); } else {
        setStatus(""); showError(e.message);
      }
    } finally {
      controller = null;
      setBusy(false);
    }
  }

  async function loadAttention(id) {
    const url = "/v1/attention/" + encodeURIComponent(id);
    let response = await fetch(url);
    for (let tries = 0; response.status === 404 && tries < 5; tries++) {
      await new Promise((done) => setTimeout(done, 100));  // the store may lag the stream end
      response = await fetch(url);
    }
    const body = await readJson(response, "attention");
    state.attention = body;
    if (state.layer === null || state.layer >= body.layers) { state.layer = body.layers - 1; }
    if (state.head !== "mean" && state.head >= body.heads) { state.head = "mean"; }
    fillSelect($("layer-select"), body.layers, "layer", null, state.layer);
    fillSelect($("head-select"), body.heads, "head", "mean of heads", state.head);
    $("attention").hidden = false;
    draw();
  }

  function fillSelect(select, count, word, meanLabel, chosen) {
    const options = meanLabel ? [new Option(meanLabel, "mean")] : [];
    for (let i = 0; i < count; i++) { options.push(new Option(word + " " + (i + 1), String(i))); }
    select.replaceChildren(...options);
    select.value = String(chosen);
  }

  // the weights of the chosen layer over the keys: one head's, or the mean of the heads
  function row() {
    const heads = state.attention.weights[state.layer];
    if (state.head !== "mean") { return heads[state.head]; }
    return heads[0].map((_, s) => heads.reduce((sum, h) => sum + h[s], 0) / heads.length);
  }

  function draw() {
    const a = state.attention, weights = row();
    const top = Math.max(...weights) || 1;
    const chips = a.tokens.map((token, s) => {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.setAttribute("role", "listitem");
      chip.textContent = token;
      chip.dataset.weight = weights[s].toFixed(4);
      chip.title = "position " + (s + 1) + ": weight " + weights[s].toFixed(4);
      chip.style.backgroundColor = "rgba(224, 112, 0, " + (weights[s] / top).toFixed(3) + ")";
      if (a.view !== "cross-attention" && s === a.query) { chip.classList.add("query"); }
      return chip;
    });
    const next = document.createElement("span");
    next.className = "chip next";
    next.setAttribute("role", "listitem");
    next.textContent = "\u2192 " + a.predicted;
    next.title = "the token the model wrote next";
    $("chips").replaceChildren(...chips, next);
    const best = weights.indexOf(Math.max(...weights));
    const heads = state.head === "mean" ? "mean of " + a.heads + " heads"
      : "head " + (state.head + 1);
    const reader = a.view === "cross-attention"
      ? "the decoder, reading \u201c" + a.query_token + "\u201d, looked over the prompt"
      : "\u201c" + a.query_token + "\u201d (outlined) looked back over " + a.tokens.length +
        " tokens";
    $("explain").textContent = "Layer " + (state.layer + 1) + ", " + heads + ": to write \u201c" +
      a.predicted + "\u201d, " + reader + "; darker chips and taller bars got more weight (most: \u201c" +
      a.tokens[best] + "\u201d, " + weights[best].toFixed(3) + ").";
    drawBars(weights, top, a.view === "cross-attention" ? -1 : a.query);
    state.attentionDraws += 1;
  }

  function drawBars(weights, top, query) {
    const canvas = $("bars"), ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, canvas.clientWidth), height = Math.max(1, canvas.clientHeight);
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const step = width / weights.length, gap = step > 4 ? 1 : 0;
    weights.forEach((w, s) => {
      const h = (w / top) * (height - 18);  // room above for the scale
      ctx.fillStyle = s === query ? "#a04f00" : "#e07000";
      ctx.fillRect(s * step + gap, height - h, Math.max(1, step - 2 * gap), h);
    });
    ctx.fillStyle = "#222";  // the scale: bars run from 0 to the largest weight
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillText("max " + top.toFixed(3), 4, 2);
    canvas.setAttribute("aria-label", "attention weight of each of " + weights.length +
      " tokens, as bars; the tallest is " + top.toFixed(3));
  }

  $("generate").addEventListener("click", generate);
  $("stop").addEventListener("click", () => { if (controller) { controller.abort(); } });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
  });
  $("layer-select").addEventListener("change", (e) => {
    state.layer = Number(e.target.value); draw();
  });
  $("head-select").addEventListener("change", (e) => {
    state.head = e.target.value === "mean" ? "mean" : Number(e.target.value); draw();
  });
  window.addEventListener("resize", () => { if (state.attention) { draw(); } });
  window.attnPlayground = { state: state, row: () => row() };  // read by the browser test
  const modelReady = loadModel();
}());
