"use strict";
(function () {
  const META = JSON.parse(document.getElementById("meta").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const G = {SINK: 0, TEMPLATE: 1, CONTEXT: 2, FINAL: 3, EMOTION: 4, REST: 5};
  const L = META.layers.length, H = META.heads.length, NG = META.groups.length;
  const ML = META.matrixLayers.length;
  const cache = new Map();
  const state = {sample: 0, layer: 0, head: -1, gridGroup: G.EMOTION, gridNorm: "total"};
  const $ = (id) => document.getElementById(id);
  const RED = "#e41a1c";

  // ---- data -------------------------------------------------------------------------------
  async function inflate(b64) {
    const raw = atob(b64);
    const packed = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) packed[i] = raw.charCodeAt(i);
    const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  async function loadSample(i) {
    if (cache.has(i)) return cache.get(i);
    const s = JSON.parse($("sample-" + i).textContent);
    const n = s.tokens.length;
    const buf = await inflate(s.blob);
    const nFinal = L * H * n, nMass = L * H * NG;
    s.finalW = new Float32Array(nFinal);
    for (let k = 0; k < nFinal; k++) { const v = buf[k] / 255; s.finalW[k] = v * v; }
    const dv = new DataView(buf.buffer, buf.byteOffset + nFinal, 2 * nMass);
    s.massW = new Float32Array(nMass);
    for (let k = 0; k < nMass; k++) s.massW[k] = dv.getUint16(2 * k, true) / 65535;
    s.rows = n - s.matrixFrom;
    s.matrixCodes = ML ? buf.subarray(nFinal + 2 * nMass) : null;
    s.emoSet = new Set(s.emotion);
    const ctx = s.groups.filter((g) => g === G.CONTEXT).length;
    const tmpl = s.groups.filter((g) => g === G.TEMPLATE).length;
    s.counts = [1, tmpl, ctx, 1, s.emotion.length, ctx - s.emotion.length];
    cache.set(i, s);
    return s;
  }
  // the final query's weights over all keys at (layer index li, head index hi; -1 = mean)
  function finalRow(s, li, hi) {
    const n = s.tokens.length, out = new Float32Array(n);
    const hs = hi >= 0 ? [hi] : META.heads.map((_, h) => h);
    hs.forEach((h) => {
      const off = (li * H + h) * n;
      for (let k = 0; k < n; k++) out[k] += s.finalW[off + k] / hs.length;
    });
    return out;
  }
  function mass(s, li, hi, g, norm) {
    let v = 0;
    if (hi >= 0) v = s.massW[(li * H + hi) * NG + g];
    else for (let h = 0; h < H; h++) v += s.massW[(li * H + h) * NG + g] / H;
    if (norm === "per_token") v = s.counts[g] > 0 ? v / s.counts[g] : NaN;
    return v;
  }
  function matrixWeight(s, mi, hs, q, k) {
    const n = s.tokens.length;
    let w = 0;
    hs.forEach((h) => {
      const v = s.matrixCodes[((mi * H + h) * s.rows + q) * n + k] / 255;
      w += v * v / hs.length;
    });
    return w;
  }

  // ---- helpers ----------------------------------------------------------------------------
  function el(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function add(svg, tag, attrs, text) {
    const e = el(tag, attrs, text);
    svg.appendChild(e);
    return e;
  }
  function label(svg, x, y, text, size, anchor) {
    return add(svg, "text", {x: x, y: y, "font-size": size || 11, "text-anchor": anchor || "start"},
               text);
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function fmt(v) {
    if (!Number.isFinite(v)) return "n/a";
    return v >= 0.01 || v === 0 ? v.toFixed(3) : v.toExponential(1);
  }
  function show(tok) { return tok.replace(/\n/g, "\u21b5\n"); }
  function headName(h) { return h < 0 ? "mean of heads" : "head " + META.heads[h]; }
  function viridis(t) {
    const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    t = Math.max(0, Math.min(1, t)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(t)), f = t - i;
    const c = stops[i].map((v, k) => Math.round(v + f * (stops[i + 1][k] - v)));
    return "rgb(" + c.join(",") + ")";
  }

  // ---- panels -----------------------------------------------------------------------------
  function renderSampleInfo(s) {
    const info = $("sample-info");
    clear(info);
    const ok = s.label === s.prediction;
    const p = document.createElement("p");
    const part = (text, cls) => {
      const b = document.createElement(cls ? "span" : "b");
      b.textContent = text;
      if (cls) b.className = cls;
      p.appendChild(b);
    };
    p.append("id ");
    part(s.id);
    p.append(" \u00b7 human label ");
    part(s.label);
    p.append(" \u00b7 predicted ");
    part(s.prediction + (ok ? " \u2713" : " \u2717"), ok ? "ok" : "bad");
    info.appendChild(p);
    $("text").textContent = s.text;
    const svg = $("probs");
    clear(svg);
    const rowH = 17, left = 78, width = 330;
    svg.setAttribute("width", left + width + 110);
    svg.setAttribute("height", META.labels.length * rowH + 8);
    META.labels.forEach((lab, j) => {
      const y = 4 + j * rowH, v = s.probs[j];
      const t = label(svg, left - 6, y + 12, lab, 12, "end");
      if (lab === s.prediction) t.setAttribute("font-weight", "bold");
      add(svg, "rect", {x: left, y: y + 2, width: Math.max(1, v * width), height: rowH - 5,
                        fill: META.labelColors[j]});
      const mark = lab === s.label ? "  \u25c6 human label" : "";
      label(svg, left + v * width + 4, y + 12, (100 * v).toFixed(1) + "%" + mark, 11);
    });
  }

  function renderSaliency(s) {
    const box = $("saliency");
    clear(box);
    $("saliency-note").textContent = "Drop in log p('" + s.prediction + "') when a token is " +
      "hidden (red: supports the prediction, blue: against it). Underlined: the " +
      s.emotion.length + " emotion-bearing token(s).";
    let bound = 1e-6;
    s.sal.forEach((v) => { bound = Math.max(bound, Math.abs(v)); });
    s.salPos.forEach((pos, j) => {
      const v = s.sal[j], a = Math.min(1, Math.abs(v) / bound);
      const span = document.createElement("span");
      span.className = "tok" + (s.emoSet.has(pos) ? " emo" : "");
      span.textContent = show(s.tokens[pos]);
      const rgb = v >= 0 ? "214,96,77" : "67,147,195";
      span.style.background = "rgba(" + rgb + "," + a.toFixed(3) + ")";
      if (a > 0.6) span.style.color = "#fff";
      span.title = "pos " + pos + "  " + JSON.stringify(s.tokens[pos]) + "  saliency " +
        v.toFixed(4);
      box.appendChild(span);
    });
  }

  function renderAttention(s) {
    const li = state.layer, hi = state.head, layer = META.layers[li];
    $("attn-title").textContent = "Attention from the final token \u2014 layer " + layer + ", " +
      headName(hi);
    const row = finalRow(s, li, hi);
    const noSink = $("nosink").checked;
    let scale = 1e-9;
    row.forEach((w, k) => { if (!(noSink && k === 0)) scale = Math.max(scale, w); });
    const box = $("attn-tokens");
    clear(box);
    box.setAttribute("data-layer", String(layer));
    box.setAttribute("data-head", String(hi));
    s.tokens.forEach((tok, k) => {
      const span = document.createElement("span");
      const a = Math.min(1, row[k] / scale);
      const group = s.emoSet.has(k) ? G.EMOTION : s.groups[k];
      span.className = "tok g" + s.groups[k] + (s.emoSet.has(k) ? " emo" : "");
      span.textContent = show(tok);
      span.style.background = "rgba(8,81,156," + a.toFixed(3) + ")";
      if (a > 0.55) span.style.color = "#fff";
      span.title = "pos " + k + "  " + JSON.stringify(tok) + "  weight " + fmt(row[k]) + "  (" +
        META.groupLabels[group] + ")";
      box.appendChild(span);
    });
    const svg = $("attn-mass");
    clear(svg);
    const rowH = 18, left = 170, width = 320;
    svg.setAttribute("width", left + width + 160);
    svg.setAttribute("height", NG * rowH + 24);
    const head = label(svg, 0, 12, "Mass on each group: total (per token \u00d7 tokens)", 12);
    head.setAttribute("font-weight", "bold");
    META.groups.forEach((g, j) => {
      const v = mass(s, li, hi, j, "total"), pt = mass(s, li, hi, j, "per_token");
      const y = 18 + j * rowH;
      label(svg, left - 6, y + 13, META.groupLabels[j], 12, "end");
      add(svg, "rect", {x: left, y: y + 3, width: Math.max(1, v * width), height: rowH - 6,
                        fill: META.groupColors[j]});
      label(svg, left + v * width + 4, y + 13, fmt(v) + "  (" + fmt(pt) + " \u00d7 " +
            s.counts[j] + ")", 11);
    });
  }

  function renderGrid(s) {
    const svg = $("grid");
    clear(svg);
    const cw = Math.max(9, Math.min(24, Math.floor(430 / (H + 1))));
    const ch = Math.max(8, Math.min(18, Math.floor(560 / L)));
    const left = 34, top = 18, gap = 4;
    svg.setAttribute("width", left + (H + 1) * cw + gap + 100);
    svg.setAttribute("height", top + L * ch + 12);
    const g = state.gridGroup, norm = state.gridNorm;
    let vmax = 1e-9;
    for (let li = 0; li < L; li++) {
      for (let h = 0; h < H; h++) {
        const v = mass(s, li, h, g, norm);
        if (Number.isFinite(v)) vmax = Math.max(vmax, v);
      }
    }
    const colX = (h) => left + (h + 1) * cw + (h < 0 ? 0 : gap);
    for (let h = -1; h < H; h++) {
      label(svg, colX(h) + cw / 2, top - 5, h < 0 ? "avg" : String(META.heads[h]), 9, "middle");
    }
    for (let li = 0; li < L; li++) {
      const y = top + li * ch;
      if (ch >= 9 || li % 2 === 0) {
        label(svg, left - 4, y + ch - 1, String(META.layers[li]), 9, "end");
      }
      for (let h = -1; h < H; h++) {
        const v = mass(s, li, h, g, norm);
        const r = add(svg, "rect", {x: colX(h), y: y, width: cw - 1, height: ch - 1, class: "cell",
                                    fill: Number.isFinite(v) ? viridis(v / vmax) : "#eee"});
        r.appendChild(el("title", {}, "layer " + META.layers[li] + ", " + headName(h) + ": " +
                                      fmt(v)));
        if (li === state.layer && h === state.head) {
          r.setAttribute("stroke", RED);
          r.setAttribute("stroke-width", 2.5);
        }
        r.addEventListener("click", () => {
          state.layer = li;
          state.head = h;
          update();
        });
      }
    }
    const lx = colX(H) + 12;
    for (let k = 0; k <= 20; k++) {
      add(svg, "rect", {x: lx, y: top + (20 - k) * 8, width: 12, height: 8, fill: viridis(k / 20)});
    }
    label(svg, lx + 16, top + 8, fmt(vmax), 10);
    label(svg, lx + 16, top + 168, "0", 10);
  }

  function renderProfile(s) {
    const svg = $("profile");
    clear(svg);
    const w = 470, h = 230, left = 46, right = 10, top = 10, bottom = 34;
    svg.setAttribute("width", w);
    svg.setAttribute("height", h + 40);
    $("profile-note").textContent = "Total mass of the final token's attention per group, " +
      headName(state.head) + ", by layer. Click to select a layer.";
    const shown = [G.SINK, G.TEMPLATE, G.CONTEXT, G.FINAL, G.EMOTION];
    const xs = (li) => left + (L === 1 ? 0 : li * (w - left - right) / (L - 1));
    const ys = (v) => top + (1 - v) * (h - top - bottom);
    add(svg, "line", {x1: left, y1: ys(0), x2: w - right, y2: ys(0), stroke: "#444"});
    add(svg, "line", {x1: left, y1: ys(0), x2: left, y2: ys(1), stroke: "#444"});
    [0, 0.25, 0.5, 0.75, 1].forEach((v) => {
      label(svg, left - 4, ys(v) + 4, v.toFixed(2), 10, "end");
    });
    for (let li = 0; li < L; li += Math.max(1, Math.ceil(L / 10))) {
      label(svg, xs(li), ys(0) + 14, String(META.layers[li]), 10, "middle");
    }
    label(svg, (left + w) / 2, ys(0) + 28, "layer", 11, "middle");
    add(svg, "line", {x1: xs(state.layer), y1: ys(0), x2: xs(state.layer), y2: ys(1), stroke: RED,
                      "stroke-dasharray": "4,3"});
    shown.forEach((g) => {
      let d = "";
      for (let li = 0; li < L; li++) {
        const v = mass(s, li, state.head, g, "total");
        d += (li ? "L" : "M") + xs(li).toFixed(1) + "," + ys(v).toFixed(1);
      }
      add(svg, "path", {d: d, fill: "none", stroke: META.groupColors[g], "stroke-width": 2,
                        "stroke-dasharray": g === G.EMOTION ? "5,3" : "none"});
    });
    shown.forEach((g, j) => {
      const x = left + 6 + (j % 3) * 140, y = h + 12 + Math.floor(j / 3) * 14;
      add(svg, "rect", {x: x, y: y - 8, width: 14, height: 4, fill: META.groupColors[g]});
      label(svg, x + 18, y - 3, META.groupLabels[g], 10);
    });
    const hit = add(svg, "rect", {x: left, y: top, width: w - left - right,
                                  height: h - top - bottom, fill: "transparent"});
    hit.addEventListener("click", (ev) => {
      const box = svg.getBoundingClientRect();
      const step = (w - left - right) / Math.max(1, L - 1);
      const li = Math.round((ev.clientX - box.left - left) / step);
      state.layer = Math.max(0, Math.min(L - 1, li));
      update();
    });
  }

  function renderMatrix(s) {
    const layer = META.layers[state.layer];
    const mi = META.matrixLayers.indexOf(layer);
    const canvas = $("matrix"), note = $("matrix-note");
    $("matrix-title").textContent = "Query \u00d7 key matrix \u2014 layer " + layer + ", " +
      headName(state.head);
    if (mi < 0 || !s.matrixCodes) {
      canvas.width = 10;
      canvas.height = 10;
      canvas.style.display = "none";
      note.textContent = "Full matrices are stored for layers " +
        (META.matrixLayers.join(", ") || "none") + " only (rebuild with matrix_layers=... " +
        "for others). Select one of them to see every query row.";
      return;
    }
    canvas.style.display = "";
    const noSink = $("nosink").checked;
    note.textContent = "Rows: queries from the first event-text token to the final token; " +
      "columns: all key tokens (position 0 left). Each row is coloured relative to its " +
      "largest weight" + (noSink ? " outside the sink" : "") + " (square-root scale). " +
      "Hover for values.";
    const n = s.tokens.length, rows = s.rows, labW = 110;
    const cw = Math.max(2, Math.min(10, Math.floor(900 / n)));
    const rh = Math.max(6, Math.min(14, Math.floor(520 / rows)));
    canvas.width = labW + n * cw;
    canvas.height = rows * rh + 4;
    const c = canvas.getContext("2d");
    c.fillStyle = "#fff";
    c.fillRect(0, 0, canvas.width, canvas.height);
    const hs = state.head >= 0 ? [state.head] : META.heads.map((_, h) => h);
    c.font = "10px monospace";
    c.textAlign = "right";
    c.textBaseline = "middle";
    for (let q = 0; q < rows; q++) {
      const qpos = s.matrixFrom + q;
      c.fillStyle = "#333";
      if (rh >= 8 || q % 2 === 0) {
        c.fillText(JSON.stringify(s.tokens[qpos]).slice(0, 14), labW - 4, q * rh + rh / 2);
      }
      let top = 1e-9;
      for (let k = noSink ? 1 : 0; k <= qpos; k++) {
        top = Math.max(top, matrixWeight(s, mi, hs, q, k));
      }
      for (let k = 0; k <= qpos; k++) {
        const a = Math.sqrt(Math.min(1, matrixWeight(s, mi, hs, q, k) / top));
        c.fillStyle = "rgba(8,81,156," + a.toFixed(3) + ")";
        c.fillRect(labW + k * cw, q * rh, cw, rh);
      }
    }
    canvas.onmousemove = (ev) => {
      const box = canvas.getBoundingClientRect();
      const sx = canvas.width / box.width, sy = canvas.height / box.height;
      const k = Math.floor(((ev.clientX - box.left) * sx - labW) / cw);
      const q = Math.floor((ev.clientY - box.top) * sy / rh);
      if (k < 0 || k >= n || q < 0 || q >= rows) return;
      const qpos = s.matrixFrom + q;
      $("matrix-hover").textContent = "query " + qpos + " " + JSON.stringify(s.tokens[qpos]) +
        " \u2192 key " + k + " " + JSON.stringify(s.tokens[k]) + ": " +
        fmt(matrixWeight(s, mi, hs, q, k));
    };
  }

  // ---- control flow -----------------------------------------------------------------------
  let pending = Promise.resolve();
  function update() {
    syncControls();
    const want = state.sample;
    pending = pending.then(() => loadSample(want)).then((s) => {
      renderSampleInfo(s);
      renderSaliency(s);
      renderAttention(s);
      renderGrid(s);
      renderProfile(s);
      renderMatrix(s);
      document.body.setAttribute("data-rendered",
                                 want + "/" + META.layers[state.layer] + "/" + state.head);
    }).catch((err) => {
      $("sample-info").textContent = "Could not show this sample: " + err;
      console.error(err);
    });
    return pending;
  }
  function syncControls() {
    $("sample").value = String(state.sample);
    $("layer").value = String(state.layer);
    $("head").value = String(state.head);
  }
  function option(parent, value, text) {
    const o = document.createElement("option");
    o.value = String(value);
    o.textContent = text;
    parent.appendChild(o);
  }
  function init() {
    $("subtitle").textContent = META.samples.length + " samples \u00b7 " + L + " layers \u00b7 " +
      H + " query heads (" + META.nKvHeads + " key/value heads) \u00b7 prompt '" +
      META.template + "' \u00b7 lens-emotion " + META.version;
    $("emo-def").textContent = META.emotionDefinition;
    $("manifest").textContent = JSON.stringify(META.manifest, null, 2);
    META.samples.forEach((m, i) => {
      const mark = m.label === m.prediction ? " \u2713" : " \u2717";
      option($("sample"), i, "#" + i + " \u00b7 " + m.label + " \u2192 " + m.prediction + mark +
             " \u00b7 " + m.preview);
    });
    META.layers.forEach((l, i) => {
      option($("layer"), i, String(l) + (META.matrixLayers.includes(l) ? "  (matrix)" : ""));
    });
    option($("head"), -1, "mean of heads");
    META.heads.forEach((h, i) => option($("head"), i, String(h)));
    META.groups.forEach((g, j) => {
      if (j !== G.FINAL) option($("grid-group"), j, META.groupLabels[j]);
    });
    $("grid-group").value = String(G.EMOTION);
    state.layer = Math.floor(L / 2);
    const onChange = (id, fn) => $(id).addEventListener("change", (e) => {
      fn(e.target);
      update();
    });
    onChange("sample", (t) => { state.sample = +t.value; });
    onChange("layer", (t) => { state.layer = +t.value; });
    onChange("head", (t) => { state.head = +t.value; });
    onChange("nosink", () => {});
    onChange("grid-group", (t) => { state.gridGroup = +t.value; });
    onChange("grid-norm", (t) => { state.gridNorm = t.value; });
    const step = (d) => {
      state.sample = (state.sample + d + META.samples.length) % META.samples.length;
      update();
    };
    $("prev-sample").addEventListener("click", () => step(-1));
    $("next-sample").addEventListener("click", () => step(1));
    document.addEventListener("keydown", (e) => {
      if (e.target && e.target.tagName === "SELECT") return;
      if (e.key === "ArrowRight") state.layer = Math.min(L - 1, state.layer + 1);
      else if (e.key === "ArrowLeft") state.layer = Math.max(0, state.layer - 1);
      else if (e.key === "ArrowDown") state.head = Math.min(H - 1, state.head + 1);
      else if (e.key === "ArrowUp") state.head = Math.max(-1, state.head - 1);
      else if (e.key === "j") { step(1); return; }
      else if (e.key === "k") { step(-1); return; }
      else return;
      e.preventDefault();
      update();
    });
    update();
  }
  init();
})();
