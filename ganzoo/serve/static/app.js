/* ganzoo serve: the pages' one script. No framework, no build step, no network but
   this server. Each page is <body data-page="...">; everything comes from /api/. */
"use strict";

// -- helpers ---------------------------------------------------------------------------
const $ = (sel, root = document) => root.querySelector(sel);
const SVGNS = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  return node;
}

async function getJSON(url) {
  const res = await fetch(url, {headers: {accept: "application/json"}});
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText}`);
  return body;
}

function fmtNum(v) {
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
  return v.toPrecision(4).replace(/\.?0+$/, "");
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

const fmtTime = (t) => new Date(t * 1000).toLocaleString();

function showError(box, messages) {
  const list = (Array.isArray(messages) ? messages : [messages]).filter(Boolean);
  box.replaceChildren(...list.map((m) => el("p", {text: String(m)})));
  box.hidden = list.length === 0;
}

function kvTable(table, rows) {
  table.replaceChildren(...rows.map(([k, v]) =>
    el("tr", {}, el("th", {text: k}), el("td", {}, v instanceof Node ? v : String(v)))));
}

function valueText(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") return fmtNum(v);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// Show small pixel images at 2x or 3x, crisp (image-rendering: pixelated in the CSS).
function scaleImage(img, maxWidth = 560) {
  const w = img.naturalWidth;
  if (!w) return;
  const k = Math.max(1, Math.min(3, Math.floor(maxWidth / w)));
  img.style.width = `${w * k}px`;
}

async function loadVersion() {
  try {
    const info = await getJSON("/api/info");
    const v = $("#version");
    if (v) v.textContent = `v${info.version}`;
    return info;
  } catch (e) { return null; }
}

// -- the sampler: a grid with seed / n / truncation / class, downloads, interpolation --------
function buildSampler(container, base, info, state = {}) {
  const conditional = info.num_classes > 0;
  const image = info.kind === "image";
  const seed = el("input", {type: "number", id: "seed", min: "0", step: "1", value: state.seed ?? 0});
  const defaultN = !image ? 256 : conditional ? Math.min(256, 8 * info.num_classes) : 64;
  const n = el("input", {type: "number", id: "n", min: "1", max: "256", step: "1", value: state.n ?? defaultN});
  const truncOn = el("input", {type: "checkbox", id: "truncation-on", checked: state.truncation != null});
  const trunc = el("input", {type: "number", id: "truncation", min: "0.05", step: "0.1",
                              value: state.truncation ?? 1.0, disabled: state.truncation == null});
  const cls = el("select", {id: "class"}, el("option", {value: "", text: "all (one class per row)"}));
  for (let i = 0; i < info.num_classes; i++) {
    const name = info.class_names[i];
    cls.append(el("option", {value: String(i), text: name ? `${i}: ${name}` : `${i}`}));
  }
  if (state.cls != null) cls.value = String(state.cls);
  const img = el("img", {id: "grid", class: image ? "grid pixel" : "grid", alt: "sample grid"});
  const status = el("p", {id: "sample-status", class: "muted", "aria-live": "polite"});
  const pngLink = el("a", {id: "download-png", class: "button", text: "Download grid (PNG)"});
  const npzLink = el("a", {id: "download-npz", class: "button", text: "Download samples (NPZ)"});

  const controls = el("div", {class: "controls"},
    el("label", {}, "Seed ", seed,
       el("button", {type: "button", title: "previous seed", onclick: () => bump(-1)}, "−"),
       el("button", {type: "button", title: "next seed", onclick: () => bump(1)}, "+"),
       el("button", {type: "button", id: "random-seed", title: "a random seed",
                     onclick: () => { seed.value = Math.floor(Math.random() * 1e6); update(); }}, "random")),
    el("label", {}, "Samples ", n),
    el("label", {title: "latents truncated to [-T, T] (the truncation trick)"}, truncOn, " Truncation ", trunc),
    conditional ? el("label", {}, "Class ", cls) : null);
  const interp = image ? buildInterpolation(base, () => params()) : null;
  container.replaceChildren(...[controls, el("figure", {}, img), status,
                                el("p", {class: "downloads"}, pngLink, " ", npzLink), interp].filter(Boolean));

  function params() {
    const p = new URLSearchParams();
    p.set("seed", seed.value.trim());
    p.set("n", n.value.trim());
    if (truncOn.checked) p.set("truncation", trunc.value.trim());
    if (conditional && cls.value !== "") p.set("class", cls.value);
    return p;
  }
  function bump(d) { seed.value = Math.max(0, (parseInt(seed.value, 10) || 0) + d); update(); }

  let t0 = 0, timer = null;
  function update() {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (!seed.value.trim() || !n.value.trim()) return;  // still typing
      const p = params();
      const url = `${base}/samples.png?${p}`;
      if (img.getAttribute("src") === url) return;
      t0 = performance.now();
      status.textContent = "Sampling…";
      img.src = url;
      pngLink.href = url;
      pngLink.setAttribute("download", `${info.label || "samples"}-seed${p.get("seed")}.png`);
      npzLink.href = `${base}/samples.npz?${p}`;
      if (state.onchange) state.onchange(p);
      if (interp) interp.refresh();
    }, 120);
  }
  img.addEventListener("load", () => {
    scaleImage(img);
    const p = new URL(img.src).searchParams;
    status.textContent = `${p.get("n")} samples, seed ${p.get("seed")}` +
      (p.get("truncation") ? `, truncation ${p.get("truncation")}` : "") +
      (p.get("class") ? `, class ${p.get("class")}` : "") +
      ` · ${Math.round(performance.now() - t0)} ms`;
    status.classList.remove("bad");
  });
  img.addEventListener("error", async () => {
    const src = img.src;
    try { await getJSON(src); status.textContent = "could not load the image"; }
    catch (e) { status.textContent = e.message; }
    status.classList.add("bad");
  });
  truncOn.addEventListener("change", () => { trunc.disabled = !truncOn.checked; update(); });
  for (const input of [seed, n, trunc, cls]) input.addEventListener("change", update);
  for (const input of [seed, n, trunc]) input.addEventListener("input", update);
  update();
  return {params};
}

function buildInterpolation(base, shared) {
  const a = el("input", {type: "number", id: "seed-a", min: "0", step: "1", value: 0});
  const b = el("input", {type: "number", id: "seed-b", min: "0", step: "1", value: 1});
  const steps = el("input", {type: "number", id: "interp-steps", min: "2", max: "32", step: "1", value: 10});
  const img = el("img", {id: "strip", class: "grid pixel", alt: "interpolation strip"});
  const status = el("p", {class: "muted", id: "strip-status"});
  const box = el("div", {class: "interp"},
    el("h3", {text: "Interpolation between two seeds"}),
    el("div", {class: "controls"}, el("label", {}, "From seed ", a), el("label", {}, "to seed ", b),
       el("label", {}, "Steps ", steps)),
    el("figure", {}, img), status);
  let timer = null;
  box.refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const s = shared();
      const p = new URLSearchParams({seed_a: a.value.trim(), seed_b: b.value.trim(), steps: steps.value.trim()});
      if (s.get("truncation")) p.set("truncation", s.get("truncation"));
      if (s.get("class")) p.set("class", s.get("class"));
      img.src = `${base}/interpolation.png?${p}`;
    }, 150);
  };
  img.addEventListener("load", () => { scaleImage(img, 900); status.textContent = ""; status.classList.remove("bad"); });
  img.addEventListener("error", async () => {
    try { await getJSON(img.src); } catch (e) { status.textContent = e.message; status.classList.add("bad"); }
  });
  for (const input of [a, b, steps]) input.addEventListener("change", box.refresh);
  return box;
}

function readState() {
  const q = new URLSearchParams(location.search);
  const num = (k) => (q.get(k) !== null && q.get(k) !== "" && isFinite(+q.get(k)) ? +q.get(k) : null);
  return {seed: num("seed"), n: num("n"), truncation: num("truncation"), cls: num("class")};
}

function keepInUrl(p) {
  const q = new URLSearchParams(p);
  history.replaceState(null, "", `${location.pathname}?${q}`);
}

// -- curves: a small hand-written SVG line chart ---------------------------------------------
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];

function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function drawChart(title, series) {
  const W = 560, H = 230, L = 58, R = 14, T = 30, B = 30;
  const root = svg("svg", {class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title});
  const pts = series.flatMap((s) => s.points);
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  root.append(svg("text", {x: L, y: 16, class: "chart-title", text: title}));
  for (const v of niceTicks(y0, y1)) {
    root.append(svg("line", {x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: "gridline"}));
    root.append(svg("text", {x: L - 6, y: sy(v) + 4, class: "tick", "text-anchor": "end", text: fmtNum(v)}));
  }
  for (const v of niceTicks(x0, x1, 6)) {
    root.append(svg("text", {x: sx(v), y: H - B + 16, class: "tick", "text-anchor": "middle", text: fmtNum(v)}));
  }
  root.append(svg("text", {x: W - R, y: H - 2, class: "tick", "text-anchor": "end", text: "step"}));
  root.append(svg("line", {x1: L, x2: L, y1: T - 6, y2: H - B, class: "axis"}));
  root.append(svg("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"}));
  let legendX = W - R;
  let drawn = 0;
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const every = Math.max(1, Math.ceil(s.points.length / 1500));  // thin out long runs
    const use = s.points.filter((_, j) => j % every === 0 || j === s.points.length - 1);
    const d = use.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)} ${sy(p[1]).toFixed(1)}`).join("");
    root.append(svg("path", {d, class: "series", stroke: color, "data-key": s.key,
                             "data-points": String(use.length)}));
    if (use.length === 1) root.append(svg("circle", {cx: sx(use[0][0]), cy: sy(use[0][1]), r: 3, fill: color}));
    drawn += use.length;
    const label = svg("text", {y: 16, class: "legend", fill: color, "text-anchor": "end", text: s.key});
    label.setAttribute("x", legendX);
    root.append(label);
    legendX -= 10 + 7 * s.key.length;
  });
  root.dataset.points = String(drawn);
  return root;
}

function groupSeries(records) {
  const byKey = new Map();
  for (const r of records) {
    if (typeof r.step !== "number") continue;
    for (const [k, v] of Object.entries(r)) {
      if (k === "step" || k === "elapsed_s" || typeof v !== "number" || !isFinite(v)) continue;
      if (!byKey.has(k)) byKey.set(k, []);
      byKey.get(k).push([r.step, v]);
    }
  }
  const groups = [];
  const losses = [...byKey.keys()].filter((k) => /loss/i.test(k));
  if (losses.length) groups.push({title: "losses", series: losses.map((k) => ({key: k, points: byKey.get(k)}))});
  for (const [k, points] of byKey) if (!losses.includes(k)) groups.push({title: k, series: [{key: k, points}]});
  return groups;
}

// -- pages --------------------------------------------------------------------------------
async function indexPage() {
  loadVersion().then((info) => {
    if (!info) return;
    $("#roots").textContent = info.roots.length
      ? `Run directories served: ${info.roots.join(", ")}`
      : "No run directory given: start with  ganzoo serve RUN_DIR ...  to see training runs here.";
  });
  const box = $("#models");
  try {
    const models = await getJSON("/api/models");
    if (!models.length) { box.replaceChildren(el("p", {class: "muted", text: "No model in the zoo."})); }
    else box.replaceChildren(...models.map(modelCard));
  } catch (e) { box.replaceChildren(el("p", {class: "error", text: e.message})); }
  try {
    const runs = await getJSON("/api/runs");
    const table = $("#runs-table");
    table.hidden = runs.length === 0;
    table.tBodies[0].replaceChildren(...runs.map((r) => el("tr", {class: r.status === "ok" ? "" : "bad"},
      el("td", {}, el("a", {href: `/runs/${encodeURIComponent(r.name)}`, text: r.name}),
         el("div", {class: "muted small", text: r.path})),
      el("td", {text: r.architecture || "—"}), el("td", {text: r.dataset || "—"}),
      el("td", {text: r.last_step ?? "—"}), el("td", {text: r.samples}), el("td", {text: r.checkpoints}),
      el("td", {text: r.exports.join(", ") || "—"}),
      el("td", {text: r.status === "ok" ? "ok" : r.error}))));
    if (!runs.length && $("#roots").textContent.startsWith("Run directories")) {
      $("#roots").append(" — no run found in them yet.");
    }
  } catch (e) { $("#roots").textContent = e.message; }
  // thumbnails after the list is up, so the page is usable at once
  for (const img of document.querySelectorAll("img[data-src]")) img.src = img.dataset.src;
}

function modelCard(m) {
  const shape = (m.card || {}).data_shape;
  const points = Array.isArray(shape) && shape.length === 1;  // 2-D points: a scatter plot
  const query = points ? "seed=0&n=256" : "seed=0&n=16&nrow=8";
  const thumb = el("img", {class: points ? "thumb" : "thumb pixel", alt: `samples of ${m.id}`,
                           "data-src": `${m.base}/samples.png?${query}`});
  return el("a", {class: "card", href: `/models/${encodeURIComponent(m.id)}`, "data-id": m.id},
    el("div", {class: points ? "thumb-box light" : "thumb-box"}, thumb),
    el("h3", {text: m.id}),
    el("p", {class: "muted", text: m.description}),
    el("p", {class: "tags"}, el("span", {class: "tag", text: m.architecture}),
       el("span", {class: "tag", text: m.dataset}),
       m.headline_text ? el("span", {class: "tag metric", text: m.headline_text}) : null));
}

async function modelPage() {
  loadVersion();
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const base = `/api/models/${encodeURIComponent(id)}`;
  $("#crumb").textContent = id;
  $("#title").textContent = id;
  document.title = `ganzoo · ${id}`;
  $("#api-link").href = base;
  let m;
  try { m = await getJSON(base); } catch (e) { showError($("#error"), e.message); return; }
  $("#description").textContent = m.description;
  const card = m.card || {};
  const installed = m.installed_architecture
    ? `${m.installed_architecture.plugin} ${m.installed_architecture.version} installed` : "not installed";
  const rows = [
    ["architecture", m.architecture],
    ["plugin", `${m.plugin} ${m.plugin_versions || ""} (${installed})`],
    ["dataset", m.dataset],
  ];
  for (const k of ["recipe", "method", "loss", "steps", "batch_size", "seed", "weights", "training_time_s",
                   "hardware", "ganzoo_version", "license", "evaluation"]) {
    if (card[k] !== undefined && card[k] !== "" && !(Array.isArray(card[k]) && !card[k].length)) rows.push([k, valueText(card[k])]);
  }
  if (card.command) rows.push(["training command", el("code", {class: "command", text: card.command})]);
  rows.push(["sha256", el("code", {class: "hash", text: m.sha256})]);
  if (m.url) rows.push(["weights url", m.url]);
  rows.push(["registered by", `${m.registered_by} ${m.registered_version}`]);
  kvTable($("#card-table"), rows);
  kvTable($("#metrics-table"), Object.entries(m.metrics || {}).map(([k, v]) =>
    [k === m.headline ? `${k} (headline)` : k, valueText(v)]));
  $("#card-raw").textContent = JSON.stringify(card, null, 2);
  let info;
  try { info = await getJSON(`${base}/generator`); }
  catch (e) { showError($("#error"), e.message); $("#sampler").replaceChildren(); return; }
  info.label = id;
  buildSampler($("#sampler"), base, info, {...readState(), onchange: keepInUrl});
}

async function runPage() {
  loadVersion();
  const name = decodeURIComponent(location.pathname.split("/").pop());
  const base = `/api/runs/${encodeURIComponent(name)}`;
  $("#crumb").textContent = name;
  $("#title").textContent = name;
  document.title = `ganzoo · run ${name}`;
  $("#api-link").href = base;
  const records = [];
  let next = 0, sourceKey = null, sampler = null;

  async function pollMetrics() {
    try {
      const m = await getJSON(`${base}/metrics?after=${next}`);
      if (m.next < next) { records.length = 0; next = 0; return pollMetrics(); }  // file was rewritten
      records.push(...m.records);
      const changed = m.next !== next || !$("#charts").childElementCount;
      next = m.next;
      $("#metrics-status").textContent = records.length
        ? `${records.length} records from metrics.jsonl · checked ${new Date().toLocaleTimeString()} (every 3 s)`
        : "No metrics yet (metrics.jsonl is empty or missing); checking every 3 s.";
      if (changed && records.length) {
        $("#charts").replaceChildren(...groupSeries(records).map((g) => drawChart(g.title, g.series)));
      }
    } catch (e) { $("#metrics-status").textContent = e.message; }
  }

  async function pollRun() {
    let run;
    try { run = await getJSON(base); } catch (e) { showError($("#errors"), e.message); return; }
    $("#run-path").textContent = run.path;
    showError($("#errors"), run.errors);
    // sample grids with a step slider; stay on the newest one if the user was there
    const slider = $("#step-slider");
    const atEnd = +slider.value === +slider.max;
    $("#step-grids").hidden = !run.samples.length;
    $("#steps-empty").hidden = !!run.samples.length;
    slider.max = String(Math.max(0, run.samples.length - 1));
    if (atEnd) slider.value = slider.max;
    slider.samples = run.samples;
    showStep();
    // checkpoints and exports
    const rows = [
      ...run.exports.map((e) => ({kind: "export", name: e.name === "_" ? "(this folder)" : e.name, step: e.step,
                                  size: e.size, mtime: e.mtime, base: e.base,
                                  label: `${e.name === "_" ? "this export" : e.name + "/"} (export: ${e.weights || "?"} weights, step ${e.step ?? "?"})`})),
      ...run.checkpoints.slice().reverse().map((c) => ({kind: "checkpoint", name: c.name, step: c.step, size: c.size,
                                                        mtime: c.mtime, base: c.base, label: `checkpoints/${c.name}.pt (step ${c.step})`})),
    ];
    $("#files-table").tBodies[0].replaceChildren(...(rows.length ? rows.map((r) => el("tr", {},
      el("td", {text: r.kind}), el("td", {}, el("code", {text: r.name})), el("td", {text: r.step ?? "—"}),
      el("td", {text: fmtBytes(r.size)}), el("td", {text: fmtTime(r.mtime)}),
      el("td", {}, el("button", {type: "button", onclick: () => { select.value = r.base; pickSource(); }}, "sample")))) :
      [el("tr", {}, el("td", {colspan: "6", class: "muted", text: "No checkpoint or export yet."}))]));
    const select = $("#source");
    const keep = select.value;
    select.replaceChildren(...rows.map((r) => el("option", {value: r.base, text: r.label})));
    if (rows.some((r) => r.base === keep)) select.value = keep;
    if (rows.length && select.value !== sourceKey) pickSource();
    // config
    const cfg = run.config;
    const items = cfg && typeof cfg === "object" && !Array.isArray(cfg)
      ? Object.entries(cfg) : [["config.json", cfg === null ? "missing or unreadable" : cfg]];
    $("#config").replaceChildren(...items.map(([k, v]) =>
      el("div", {}, el("span", {class: "k", text: k}), " ", el("span", {class: "v", text: valueText(v)}))));
  }

  function showStep() {
    const slider = $("#step-slider");
    const s = (slider.samples || [])[+slider.value];
    if (!s) return;
    $("#step-label").textContent = `${s.step} (${+slider.value + 1} of ${slider.samples.length})`;
    const img = $("#step-grid");
    if (img.getAttribute("src") !== s.url) img.src = s.url;
  }
  $("#step-slider").addEventListener("input", showStep);
  $("#step-grid").addEventListener("load", () => scaleImage($("#step-grid")));

  async function pickSource() {
    const select = $("#source");
    sourceKey = select.value;
    const state = sampler ? Object.fromEntries(sampler.params()) : {};
    let info;
    try { info = await getJSON(`${sourceKey}/generator`); }
    catch (e) { $("#sampler").replaceChildren(el("p", {class: "error", text: e.message})); sampler = null; return; }
    info.label = `${name}-${sourceKey.split("/").pop()}`;
    // the same seed, n, truncation and class carry over from one checkpoint to the next
    sampler = buildSampler($("#sampler"), sourceKey, info, {
      seed: state.seed ?? 0, n: state.n ?? 64, truncation: state.truncation ?? null,
      cls: info.num_classes ? (state.class ?? null) : null});
  }
  $("#source").addEventListener("change", pickSource);

  await Promise.all([pollRun(), pollMetrics()]);
  setInterval(pollMetrics, 3000);
  setInterval(pollRun, 10000);
}

async function pluginsPage() {
  loadVersion();
  let data;
  try { data = await getJSON("/api/plugins"); } catch (e) { showError($("#error"), e.message); return; }
  $("#plugins-table").tBodies[0].replaceChildren(...data.plugins.map((p) => el("tr", {class: p.status === "ok" ? "" : "bad"},
    el("td", {text: p.distribution}), el("td", {text: p.version}), el("td", {}, el("code", {text: p.name})),
    el("td", {}, el("span", {class: `status ${p.status}`, text: p.status})),
    el("td", {text: p.error || p.hooks.join(", ")}))));
  const failed = data.plugins.filter((p) => p.status !== "ok");
  if (failed.length) showError($("#error"), failed.map((p) => `plugin ${p.distribution} (${p.name}) was skipped: ${p.error}`));
  $("#kinds").replaceChildren(...data.kinds.map((k) => el("section", {class: "kind", id: `kind-${k.kind}`},
    el("h2", {text: `${k.kind} (${k.entries.length})`}),
    k.entries.length ? el("table", {class: "list"},
      el("thead", {}, el("tr", {}, el("th", {text: "Name"}), el("th", {text: "Plugin"}), el("th", {text: "Version"}),
                      el("th", {text: "Description"}))),
      el("tbody", {}, k.entries.map((e) => el("tr", {},
        el("td", {}, k.kind === "model" ? el("a", {href: `/models/${encodeURIComponent(e.name)}`, text: e.name})
                                        : el("code", {text: e.name})),
        el("td", {text: e.plugin}), el("td", {text: e.version}), el("td", {text: e.description})))))
      : el("p", {class: "muted", text: "none registered"}))));
}

const PAGES = {index: indexPage, model: modelPage, run: runPage, plugins: pluginsPage};
document.addEventListener("DOMContentLoaded", () => {
  const page = PAGES[document.body.dataset.page];
  if (page) page().catch((e) => console.error(e));
});
