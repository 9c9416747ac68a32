// localtrack dashboard: projects, runs table, charts, run page, compare, sweeps.
//
// Safety rule for this file: data from the store (run names, ids, tags, config keys and
// values) reaches the page only as text — textContent, attribute values, or plotly strings
// passed through plotText() (plotly reads a few HTML-like tags in names). Nothing here
// uses innerHTML, eval or inline handlers, and the server's CSP forbids inline scripts.
"use strict";

const STATES = ["running", "finished", "failed", "crashed", "preempted", "stopped"];  // stopped: a sweep job its early termination ended
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#c026d3",
  "#65a30d", "#b45309", "#475569", "#db2777", "#0d9488"];
const STATUS_EVERY_MS = 2000;   // selected/open runs: charts of a live run follow within ~2 s
const LIST_EVERY_MS = 4000;     // the runs table (new runs, states)
const MARKERS_UP_TO = 60;       // short series are drawn with a marker per point
const DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"];  // a shared run's writers beside other runs
const enc = encodeURIComponent;

// plotly.js is 4.8 MB: load it beside the page, so the runs table shows before it is parsed.
const plotlyReady = new Promise((resolve, reject) => {
  const s = document.createElement("script");
  s.src = "/static/plotly.min.js";
  s.onload = () => resolve(window.Plotly);
  s.onerror = () => reject(new Error("plotly.js could not be loaded from this server."));
  document.head.append(s);
});

// ---------------------------------------------------------------- small helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "checked" || k === "value" || k === "disabled" || k === "selected") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A string for plotly, which decodes entities and reads <b>, <a>… in names: escape it. */
function plotText(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  let res;
  try {
    res = await fetch(url, {cache: "no-store"});
  } catch (err) {
    setConn(false);
    throw new Error("The localtrack ui server does not answer (was it stopped?).");
  }
  setConn(true);
  const body = await res.json().catch(() => ({error: res.statusText}));
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

function setConn(ok) {
  const el = document.getElementById("conn");
  if (el) el.className = "conn " + (ok ? "ok" : "down");
}

const INT_FORMAT = new Intl.NumberFormat("en-US");   // one formatter: toLocaleString() per cell is slow
function fmtNum(v) {
  if (typeof v !== "number") return v;
  if (Number.isInteger(v)) return Math.abs(v) >= 1e15 ? v.toExponential(3) : INT_FORMAT.format(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
  return String(Number(v.toPrecision(5)));
}

function fmtValue(v) {
  if (v === null) return "null";
  if (v === undefined) return "";
  if (typeof v === "number") return fmtNum(v);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function fmtDuration(s) {
  if (!(s >= 0)) return "";
  s = Math.round(s);
  const d = Math.floor(s / 86400), hh = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");
function fmtTime(ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
/** Seconds since the epoch -> local time string that plotly's date axis shows as is. */
function plotDate(ts) {
  const d = new Date(ts * 1000);
  return `${fmtTime(ts)}.${pad(d.getMilliseconds(), 3)}`;
}
function parsePlotDate(s) {
  return typeof s === "number" ? s / 1000 : new Date(String(s).replace(" ", "T")).getTime() / 1000;
}

function stateBadge(state, error) {
  // "damaged": the server could not read the run's files; error says which and how to fix it.
  const cls = STATES.includes(state) ? state : "unknown";
  return h("span", {class: `state ${cls}`, title: error || (state === "running" ? "a live process is writing this run" : null)}, state);
}

function store(project) {
  const key = `localtrack:${project}`;
  let data = {};
  try { data = JSON.parse(localStorage.getItem(key) || "{}") || {}; } catch (e) { data = {}; }
  return {data, save() { try { localStorage.setItem(key, JSON.stringify(data)); } catch (e) { /* private mode */ } }};
}

function compare(a, b) {
  const an = a === undefined || a === null || a === "", bn = b === undefined || b === null || b === "";
  if (an || bn) return an && bn ? 0 : an ? 1 : -1;     // missing values sort last either way
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, {numeric: true});
}

function ema(ys, weight) {
  // TensorBoard's debiased exponential moving average.
  const out = new Array(ys.length);
  let last = 0, n = 0;
  for (let i = 0; i < ys.length; i++) {
    last = last * weight + (1 - weight) * ys[i];
    n++;
    out[i] = last / (1 - Math.pow(weight, n));
  }
  return out;
}

function hexAlpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16 & 255},${n >> 8 & 255},${n & 255},${a})`;
}

// ---------------------------------------------------------------- view lifecycle

let view = null;   // {alive, timers, charts}

function startView() {
  stopView();
  view = {alive: true, timers: [], charts: []};
  return view;
}

function stopView() {
  if (!view) return;
  view.alive = false;
  view.timers.forEach(clearTimeout);
  view.charts.forEach(c => c.destroy());
  view = null;
}

/**
 * Run fn about every ms while the view lives and the tab is visible, never two at once, and
 * never more than a quarter of the time: a slow answer (a huge store) spaces the polls out.
 */
function every(v, ms, fn) {
  const tick = async () => {
    if (!v.alive) return;
    let took = 0;
    if (!document.hidden) {
      const t = performance.now();
      try { await fn(); } catch (err) { console.warn(err); }
      took = performance.now() - t;
    }
    if (v.alive) v.timers.push(setTimeout(tick, Math.max(ms, 4 * took)));
  };
  v.timers.push(setTimeout(tick, ms));
}

function crumbs(...items) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...items.flatMap((it, i) => i ? [h("span", {class: "sep"}, "/"), it] : [it]));
}

function showError(err) {
  const app = document.getElementById("app");
  app.replaceChildren(h("div", {class: "error", role: "alert"}, String(err.message || err)));
}

// ---------------------------------------------------------------- charts

/**
 * One panel per metric; each run a line (and a min/max band when the server downsampled).
 * runs(): [{path, name, metrics, updated, steps, state}], colorOf(path) -> "#rrggbb".
 */
class Charts {
  constructor(root, st, runs, colorOf) {
    this.runs = runs;
    this.colorOf = colorOf;
    this.st = st;   // shared with the view, so neither overwrites the other's settings
    this.opts = Object.assign({x: "step", smooth: 0, log: false, filter: "", hidden: false, labels: true}, this.st.data.chart || {});
    this.hist = new Map();          // path -> {sig, data}
    this.zoom = new Map();          // metric -> {range: [x0, x1], data: Map(path -> /api/history answer)}
    this.panels = new Map();        // metric -> {el, plot, info}
    this.controls = this.buildControls();
    this.grid = h("div", {class: "panels", id: "panels"});
    root.replaceChildren(this.controls, this.grid);
  }

  buildControls() {
    const o = this.opts;
    const save = () => { this.st.data.chart = this.opts; this.st.save(); };
    const xSel = h("select", {id: "x-axis", onchange: e => { o.x = e.target.value; this.zoom.clear(); save(); this.refresh(true); }},
      h("option", {value: "step", selected: o.x === "step"}, "step"),
      h("option", {value: "time", selected: o.x === "time"}, "wall time"));
    const smoothVal = h("span", {class: "mono"}, o.smooth.toFixed(2));
    const smooth = h("input", {type: "range", id: "smoothing", min: "0", max: "0.99", step: "0.01", value: String(o.smooth),
      oninput: e => { o.smooth = Number(e.target.value); smoothVal.textContent = o.smooth.toFixed(2); save(); this.draw(); }});
    const log = h("input", {type: "checkbox", id: "log-y", checked: o.log,
      onchange: e => { o.log = e.target.checked; save(); this.draw(); }});
    const hidden = h("input", {type: "checkbox", id: "show-hidden", checked: o.hidden,
      onchange: e => { o.hidden = e.target.checked; save(); this.draw(); }});
    const labels = h("input", {type: "checkbox", id: "by-label", checked: o.labels,
      onchange: e => { o.labels = e.target.checked; save(); this.draw(); }});
    this.labelControl = h("label", {class: "inline", hidden: true,
      title: "a shared run (init(mode=\"shared\")): a line per writer, or every writer's rows merged by step"},
    labels, " a line per writer");
    const filter = h("input", {type: "search", id: "metric-filter", placeholder: "filter metrics", value: o.filter,
      oninput: e => { o.filter = e.target.value; save(); this.draw(); }});
    return h("div", {class: "chart-controls"},
      h("label", {class: "inline"}, "x axis ", xSel),
      h("label", {class: "inline"}, "smoothing ", smooth, smoothVal),
      h("label", {class: "inline"}, log, " log y"),
      h("label", {class: "inline", title: "metrics define_metric(hidden=True) keeps off the charts"}, hidden, " hidden metrics"),
      this.labelControl, filter,
      h("span", {class: "muted"}, "drag to zoom (full resolution inside the zoom), double-click to reset"));
  }

  destroy() {
    for (const p of this.panels.values()) if (window.Plotly) Plotly.purge(p.plot);
    this.panels.clear();
  }

  sig(run) { return `${run.updated}|${run.steps}|${this.opts.x}`; }

  points() {
    // window.innerWidth, not an element's width: that would force a layout of the whole
    // page (a 1,000-row table) on every call.
    return Math.max(200, Math.min(2000, Math.round(window.innerWidth / 2)));
  }

  /** Fetch what changed (or everything when force), then draw. */
  async refresh(force) {
    const runs = this.runs();
    const fetches = runs.filter(r => force || !this.hist.has(r.path) || this.hist.get(r.path).sig !== this.sig(r))
      .map(async r => {
        const sig = this.sig(r);
        const data = await api("/api/history", {path: r.path, keys: r.metrics.join(","), x: this.opts.x, points: this.points(),
          by: "label"});
        this.hist.set(r.path, {sig, data});
        for (const [metric, z] of this.zoom) {
          if (r.metrics.includes(metric)) z.data.set(r.path, await this.fetchZoom(r, metric, z.range));
        }
      });
    await Promise.all(fetches);
    await plotlyReady;
    this.draw();
  }

  async fetchZoom(run, metric, range) {
    return api("/api/history", {path: run.path, keys: metric, x: this.opts.x, points: this.points(),
      xmin: range[0], xmax: range[1], by: "label"});
  }

  metrics() {
    // Metrics with at least one point among the shown runs (a summary-only key has none);
    // define_metric(hidden=True) keeps a metric off unless the "hidden metrics" box is ticked.
    const all = new Set(), hidden = new Set();
    for (const r of this.runs()) {
      const series = this.hist.get(r.path)?.data.series || {};
      r.metrics.forEach(m => {
        if (series[m]?.x?.length) all.add(m);
        if (series[m]?.hidden) hidden.add(m);
      });
    }
    const f = this.opts.filter.toLowerCase();
    return [...all].filter(m => (this.opts.hidden || !hidden.has(m)) && (!f || m.toLowerCase().includes(f))).sort((a, b) => a.localeCompare(b, undefined, {numeric: true}));
  }

  draw() {
    if (!window.Plotly) return;
    const runs = this.runs();
    const metrics = this.metrics();
    for (const [m, p] of this.panels) {
      if (!metrics.includes(m)) { Plotly.purge(p.plot); p.el.remove(); this.panels.delete(m); }
    }
    if (!runs.length || !metrics.length) {
      this.grid.replaceChildren(h("div", {class: "empty"}, runs.length ? "No numeric metrics logged yet." : "Select runs to chart them."));
      for (const p of this.panels.values()) Plotly.purge(p.plot);
      this.panels.clear();
      return;
    }
    this.grid.querySelector(".empty")?.remove();
    this.labelControl.hidden = !runs.some(r => this.hist.get(r.path)?.data.labels);
    for (const m of metrics) {
      let p = this.panels.get(m);
      if (!p) {
        p = this.makePanel(m);
        this.panels.set(m, p);
      }
      this.grid.append(p.el);   // (re)appending keeps the metric order
      this.drawPanel(m, p, runs);
    }
  }

  makePanel(metric) {
    const plot = h("div", {class: "plot"});
    const info = h("span", {class: "info"});
    const el = h("div", {class: "panel", dataset: {metric}},
      h("div", {class: "panel-head"}, h("span", {class: "title", title: metric}, metric), info), plot);
    const p = {el, plot, info, bound: false};
    return p;
  }

  drawPanel(metric, p, runs) {
    const o = this.opts;
    const zoom = this.zoom.get(metric);
    const traces = [];
    let rows = 0, sampled = false, axis = null, missing = null;
    const lines = runs.flatMap(r => this.linesOf(r, metric, zoom, runs.length > 1));
    for (const {s, group, name, color, dash, meta} of lines) {
      if (!s || !s.x || !s.x.length) continue;
      axis = axis || s.axis || null;   // define_metric(step_metric=...): the x axis it names
      missing = missing || s.axis_missing || null;   // ... never logged: charted by step
      rows = Math.max(rows, s.rows);
      sampled = sampled || s.sampled;
      const xs = o.x === "time" ? s.x.map(plotDate) : s.x;
      const common = {x: xs, type: "scatter", legendgroup: group, meta};
      if (s.sampled) {
        // The band's thin edges keep a one-bucket spike visible.
        const edge = {width: 0.6, color: hexAlpha(color, 0.45)};
        traces.push({...common, y: s.ymin, mode: "lines", line: edge, hoverinfo: "skip", showlegend: false});
        traces.push({...common, y: s.ymax, mode: "lines", line: edge, fill: "tonexty",
          fillcolor: hexAlpha(color, 0.16), hoverinfo: "skip", showlegend: false});
      }
      if (o.smooth > 0) {
        traces.push({...common, y: s.y, mode: "lines", line: {width: 1, color}, opacity: 0.28, hoverinfo: "skip", showlegend: false});
      }
      const markers = s.y.length <= MARKERS_UP_TO;
      traces.push({...common, y: o.smooth > 0 ? ema(s.y, o.smooth) : s.y, name: plotText(name),
        mode: markers ? "lines+markers" : "lines", marker: {size: 5, color}, line: {width: 1.7, color, dash}});
    }
    const legend = runs.length > 1 || lines.filter(l => l.s?.x?.length).length > 1;
    p.info.textContent = rows ? `${INT_FORMAT.format(rows)} rows` + (sampled ? " · downsampled, band = min/max" : "") +
      (zoom ? " · zoomed" : "") + (missing && !axis ? ` · step metric ${missing} never logged: by _step` : "") : "no points";
    const layout = {
      margin: {l: 52, r: 12, t: 6, b: 34}, height: 270, showlegend: legend,
      legend: {orientation: "h", y: -0.18, font: {size: 11}},
      xaxis: {type: o.x === "time" ? "date" : "linear", zeroline: false, automargin: true,
        title: axis ? {text: plotText(axis), standoff: 4, font: {size: 11}} : undefined},
      yaxis: {type: o.log ? "log" : "linear", zeroline: false, automargin: true, exponentformat: "e"},
      hovermode: "closest", uirevision: `${metric}|${o.x}|${o.log}`,
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", font: {size: 11},
    };
    if (legend) layout.margin.b = 20;
    if (axis) p.el.dataset.axis = axis; else delete p.el.dataset.axis;
    if (missing && !axis) p.el.dataset.axisMissing = missing; else delete p.el.dataset.axisMissing;
    Plotly.react(p.plot, traces, layout, {displaylogo: false, responsive: true, typesetMath: false,
      modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"]});
    if (!p.bound) {
      p.bound = true;
      p.plot.on("plotly_relayout", ev => this.onRelayout(metric, ev));
    }
  }

  /**
   * The lines of run ``r`` in one metric's panel: a shared run's one per writer label (its
   * legend: the label) while "a line per writer" is ticked, else one, every writer's rows
   * merged by step. Beside other runs a writer's line has its run's colour and a dash per label.
   */
  linesOf(r, metric, zoom, many) {
    const data = zoom?.data.get(r.path) || this.hist.get(r.path)?.data;
    if (!data) return [];
    const color = this.colorOf(r.path);
    if (this.opts.labels && data.labels) {
      return Object.entries(data.labels).map(([label, series], i) => ({
        s: series[metric], group: `${r.path}|${label}`, meta: r.path,
        name: many ? `${r.name} · ${label}` : label, color: many ? color : PALETTE[i % PALETTE.length],
        dash: many ? DASHES[i % DASHES.length] : "solid"}));
    }
    return [{s: data.series[metric], group: r.path, meta: r.path, name: r.name, color, dash: "solid"}];
  }

  async onRelayout(metric, ev) {
    if (ev["xaxis.autorange"]) {
      if (this.zoom.delete(metric)) this.draw();
      return;
    }
    const a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
    if (a === undefined || b === undefined) return;
    const range = this.opts.x === "time" ? [parsePlotDate(a), parsePlotDate(b)] : [Number(a), Number(b)];
    const z = {range, data: new Map()};
    this.zoom.set(metric, z);
    await Promise.all(this.runs().filter(r => r.metrics.includes(metric)).map(async r => {
      z.data.set(r.path, await this.fetchZoom(r, metric, range));
    }));
    if (this.zoom.get(metric) === z) this.draw();
  }
}

// ---------------------------------------------------------------- home: projects

async function showHome() {
  const v = startView();
  crumbs();
  const data = await api("/api/projects");
  if (!v.alive) return;
  document.getElementById("store").textContent = data.root;
  if (data.projects.length === 1) {
    location.replace(`#/p/${enc(data.projects[0].name)}`);
    return;
  }
  const app = document.getElementById("app");
  const body = h("tbody");
  for (const p of data.projects) {
    body.append(h("tr", {},
      h("td", {}, h("a", {href: `#/p/${enc(p.name)}`}, p.name)),
      h("td", {class: "num"}, p.runs),
      h("td", {}, p.running ? h("span", {class: "state running"}, `${p.running} running`) : ""),
      h("td", {}, fmtTime(p.updated))));
  }
  app.replaceChildren(h("h1", {}, "Projects"),
    data.projects.length
      ? h("div", {class: "table-wrap"}, h("table", {id: "projects"},
        h("thead", {}, h("tr", {}, h("th", {}, "project"), h("th", {}, "runs"), h("th", {}, "live"), h("th", {}, "last update"))), body))
      : h("p", {class: "muted"}, `No runs in ${data.root} yet. Log one with localtrack.init(…, dir=…) and it appears here.`));
  every(v, LIST_EVERY_MS, async () => {
    const again = await api("/api/projects");
    if (v.alive && JSON.stringify(again) !== JSON.stringify(data)) route();
  });
}

// ---------------------------------------------------------------- project: runs table + charts

const FIXED_COLUMNS = [
  {key: "name", label: "name"}, {key: "id", label: "id"}, {key: "state", label: "state"},
  {key: "steps", label: "steps", num: true}, {key: "duration", label: "duration", num: true},
  {key: "created", label: "created"}, {key: "tags", label: "tags"}, {key: "group", label: "group"},
  {key: "host", label: "host"},
];

function cellValue(run, key) {
  if (key.startsWith("c:")) return run.config[key.slice(2)];
  if (key.startsWith("s:")) return run.summary[key.slice(2)];
  if (key === "tags") return run.tags.join(" ");
  return run[key];
}

function searchText(run) {
  const cfg = Object.entries(run.config).map(([k, v]) => `${k}=${fmtValue(v)}`);
  return [run.name, run.id, run.group || "", run.host || "", ...run.tags, ...cfg].join("\n").toLowerCase();
}

function defaultColumns(runs) {
  // Config keys whose value differs between runs, then numeric summary keys: up to 6 each.
  const cfg = new Map(), sum = new Set();
  for (const r of runs) {
    for (const [k, v] of Object.entries(r.config)) {
      if (!cfg.has(k)) cfg.set(k, new Set());
      cfg.get(k).add(JSON.stringify(v));
    }
    for (const [k, v] of Object.entries(r.summary)) if (typeof v === "number") sum.add(k);
  }
  const varying = [...cfg].filter(([, vals]) => vals.size > 1).map(([k]) => k);
  return {config: varying.slice(0, 6), summary: [...sum].sort().slice(0, 6)};
}

async function showProject(project) {
  const v = startView();
  const st = store(project);
  const d = st.data;
  d.filters = Object.assign({q: "", state: "", tag: "", group: ""}, d.filters || {});
  d.sort = d.sort || {key: "created", dir: -1};
  crumbs(h("a", {href: `#/p/${enc(project)}`}, project));
  const listing = await api("/api/runs", {project});
  let runs = listing.runs;
  if (!v.alive) return;
  document.getElementById("store").textContent = listing.root;
  let byPath = new Map(runs.map(r => [r.path, r]));
  if (!d.cols) d.cols = defaultColumns(runs);
  if (!d.selected) {
    // First visit: the live runs and the newest ones, up to 5.
    const newest = runs.filter(r => !r.error).sort((a, b) => (b.state === "running") - (a.state === "running") || b.created - a.created);
    d.selected = newest.slice(0, 5).map(r => r.path);
  }
  d.colors = d.colors || {};
  const selected = () => d.selected.filter(p => byPath.has(p));
  const colorOf = path => PALETTE[(d.colors[path] ?? 0) % PALETTE.length];
  const assignColor = path => {
    // Keep a run's colour while no other selected run has it (colours outlive a deselection).
    const used = new Set(selected().filter(p => p !== path).map(p => d.colors[p]));
    if (d.colors[path] !== undefined && !used.has(d.colors[path])) return;
    let i = 0;
    while (used.has(i) && i < PALETTE.length) i++;
    d.colors[path] = i % PALETTE.length;
  };
  selected().forEach(assignColor);
  st.save();

  // toolbar
  const q = h("input", {type: "search", id: "search", placeholder: "search name, id, tags, group, config (lr=0.1)", value: d.filters.q});
  const stateSel = h("select", {id: "filter-state"});
  const tagSel = h("select", {id: "filter-tag"});
  const groupSel = h("select", {id: "filter-group"});
  const colMenu = h("div", {class: "menu"});
  const colDetails = h("details", {class: "columns"}, h("summary", {}, "columns"), colMenu);
  const count = h("span", {class: "count", id: "run-count"});
  const compareBtn = h("button", {class: "primary", id: "compare", onclick: () => {
    location.hash = `#/p/${enc(project)}/compare/${selected().map(p => enc(p.split("/")[1])).join(",")}`;
  }}, "compare selected");
  const clearBtn = h("button", {id: "clear-selection", onclick: () => { d.selected = []; st.save(); renderTable(); charts.refresh(); }}, "clear selection");
  const thead = h("thead");
  const tbody = h("tbody");
  const table = h("table", {id: "runs"}, thead, tbody);
  const chartRoot = h("section", {id: "charts"});
  const app = document.getElementById("app");
  app.replaceChildren(projectTabs(project, "runs"),
    h("div", {class: "toolbar"}, q, stateSel, tagSel, groupSel, colDetails, count, compareBtn, clearBtn),
    h("div", {class: "table-wrap"}, table), chartRoot);

  const charts = new Charts(chartRoot, st, () => selected().map(p => byPath.get(p)), colorOf);
  v.charts.push(charts);

  function fillSelect(sel, label, values, current) {
    sel.replaceChildren(h("option", {value: ""}, label),
      ...values.map(x => h("option", {value: x, selected: x === current}, x)));
    sel.value = values.includes(current) ? current : "";
  }

  function renderFilters() {
    const tags = [...new Set(runs.flatMap(r => r.tags))].sort();
    const groups = [...new Set(runs.map(r => r.group).filter(Boolean))].sort();
    fillSelect(stateSel, "any state", STATES, d.filters.state);
    fillSelect(tagSel, "any tag", tags, d.filters.tag);
    fillSelect(groupSel, "any group", groups, d.filters.group);
    const cfgKeys = [...new Set(runs.flatMap(r => Object.keys(r.config)))].sort();
    const sumKeys = [...new Set(runs.flatMap(r => Object.keys(r.summary)))].sort();
    const box = (kind, k) => h("label", {}, h("input", {type: "checkbox", checked: d.cols[kind].includes(k), onchange: e => {
      d.cols[kind] = e.target.checked ? [...d.cols[kind], k] : d.cols[kind].filter(x => x !== k);
      st.save(); renderTable();
    }}), " ", k);
    colMenu.replaceChildren(h("h4", {}, "config"), ...cfgKeys.map(k => box("config", k)),
      h("h4", {}, "summary"), ...sumKeys.map(k => box("summary", k)));
  }

  function columns() {
    return [...FIXED_COLUMNS,
      ...d.cols.config.map(k => ({key: `c:${k}`, label: k, cls: "cfg", title: `config ${k}`})),
      ...d.cols.summary.map(k => ({key: `s:${k}`, label: k, cls: "sum", title: `summary ${k}`}))];
  }

  function visible() {
    const f = d.filters, words = f.q.toLowerCase().split(/\s+/).filter(Boolean);
    const rows = runs.filter(r => (!f.state || r.state === f.state) && (!f.tag || r.tags.includes(f.tag)) &&
      (!f.group || r.group === f.group) && (!words.length || words.every(w => searchText(r).includes(w))));
    const {key, dir} = d.sort;
    return rows.sort((a, b) => dir * compare(cellValue(a, key), cellValue(b, key)));
  }

  // Rows are rebuilt only when what they show changed, so polling a 1,000-run table is cheap.
  const rowCache = new Map();   // path -> {key, tr, duration}

  function renderTable() {
    const cols = columns();
    const colsKey = cols.map(c => c.key).join("\n");
    const rows = visible();
    const sel = new Set(selected());
    const all = h("input", {type: "checkbox", id: "select-all", title: "select all shown (up to 20)",
      checked: rows.length > 0 && rows.slice(0, 20).every(r => sel.has(r.path)), onchange: e => {
        const shown = rows.slice(0, 20).map(r => r.path);
        d.selected = e.target.checked ? [...new Set([...selected(), ...shown])] : selected().filter(p => !shown.includes(p));
        d.selected.forEach(assignColor); st.save(); renderTable(); charts.refresh();
      }});
    thead.replaceChildren(h("tr", {}, h("th", {}, all), ...cols.map(c => h("th", {
      class: `sortable ${c.cls || ""}`, title: c.title || `sort by ${c.label}`, dataset: {key: c.key},
      onclick: () => { d.sort = {key: c.key, dir: d.sort.key === c.key ? -d.sort.dir : (c.num || c.key.startsWith("s:") ? -1 : 1)}; st.save(); renderTable(); },
    }, c.label, d.sort.key === c.key ? h("span", {class: "arrow"}, d.sort.dir > 0 ? " ▲" : " ▼") : ""))));
    tbody.replaceChildren(...rows.map(r => {
      const on = sel.has(r.path);
      const key = `${colsKey}|${on}|${colorOf(r.path)}|${JSON.stringify({...r, duration: 0})}`;
      const cached = rowCache.get(r.path);
      if (cached && cached.key === key) {
        if (cached.duration) cached.duration.textContent = fmtDuration(r.duration);
        return cached.tr;
      }
      const built = buildRow(r, cols, on);
      rowCache.set(r.path, {key, ...built});
      return built.tr;
    }));
    count.textContent = `${rows.length} of ${runs.length} runs`;
    compareBtn.disabled = sel.size < 2;
    compareBtn.textContent = `compare selected (${sel.size})`;
  }

  function buildRow(r, cols, on) {
    let duration = null;
    const box = h("input", {type: "checkbox", class: "select", checked: on, onchange: e => {
      d.selected = e.target.checked ? [...selected(), r.path] : selected().filter(p => p !== r.path);
      if (e.target.checked) assignColor(r.path);
      st.save(); renderTable(); charts.refresh();
    }});
    const cells = cols.map(c => {
      const val = cellValue(r, c.key);
      if (c.key === "name") {
        return h("td", {class: "name"}, on ? h("span", {class: "swatch", style: `background:${colorOf(r.path)}`}) : "",
          h("a", {href: `#/p/${enc(project)}/r/${enc(r.id)}`}, r.name));
      }
      if (c.key === "id") return h("td", {class: "mono"}, r.id);
      if (c.key === "state") return h("td", {}, stateBadge(r.state, r.error));
      if (c.key === "duration") return (duration = h("td", {class: "num"}, fmtDuration(r.duration)));
      if (c.key === "created") return h("td", {}, fmtTime(r.created));
      if (c.key === "tags") return h("td", {}, r.tags.map(t => h("span", {class: "tag"}, t)));
      if (val === null && !c.key.includes(":")) return h("td", {});
      return h("td", {class: typeof val === "number" ? "num" : ""}, fmtValue(val));
    });
    return {tr: h("tr", {class: on ? "selected" : "", dataset: {path: r.path}}, h("td", {}, box), ...cells), duration};
  }

  q.addEventListener("input", () => { d.filters.q = q.value; st.save(); renderTable(); });
  for (const [sel, key] of [[stateSel, "state"], [tagSel, "tag"], [groupSel, "group"]]) {
    sel.addEventListener("change", () => { d.filters[key] = sel.value; st.save(); renderTable(); });
  }
  renderFilters();
  renderTable();
  await charts.refresh();

  // Live: a selected run that changed refreshes its curves; the table follows on its own clock.
  every(v, STATUS_EVERY_MS, async () => {
    const paths = selected();
    if (!paths.length) return;
    const status = await api("/api/status", {paths: paths.join(",")});
    let changed = false;
    for (const p of paths) {
      const s = status[p], r = byPath.get(p);
      if (s && r && (s.updated !== r.updated || s.steps !== r.steps || s.state !== r.state)) {
        Object.assign(r, s);
        changed = true;
      }
    }
    if (changed && v.alive) { renderTable(); await charts.refresh(); }
  });
  // The table: ask only for the rows changed since the last listing (?since=), merge them.
  let stamp = listing.stamp;
  every(v, LIST_EVERY_MS, async () => {
    const polled = await api("/api/runs", {project, since: stamp});
    if (!v.alive) return;
    const merged = mergeRuns(byPath, polled);
    stamp = polled.stamp;
    if (merged.changed) {
      runs = merged.runs;
      byPath = new Map(runs.map(r => [r.path, r]));
      renderFilters();
      renderTable();
      await charts.refresh();
    } else if (merged.ticking) {
      renderTable();   // durations of live runs still tick
    }
  });
}

/**
 * Merge an incremental listing ({since, paths, runs}) into the rows held (path -> row):
 * the rows it sends replace theirs, paths it no longer lists are gone; a listing whose
 * since is null (first, or the server restarted) is every row. changed: anything beyond a
 * duration moved; ticking: a live run's duration did.
 */
function mergeRuns(byPath, polled) {
  const held = polled.since === null ? new Map() : byPath;
  const fresh = new Map(polled.runs.map(r => [r.path, r]));
  let changed = polled.since === null || polled.paths.length !== byPath.size, ticking = false;
  const runs = [];
  for (const path of polled.paths) {
    const old = byPath.get(path), row = fresh.get(path) || held.get(path);
    if (!row) continue;   // not sent and not held: the next full listing brings it
    if (!old) changed = true;
    else if (row !== old) {
      if (JSON.stringify({...row, duration: 0}) !== JSON.stringify({...old, duration: 0})) changed = true;
      else if (row.duration !== old.duration) { old.duration = row.duration; ticking = true; }
      if (!changed) { runs.push(old); continue; }
    }
    runs.push(row);
  }
  return {runs, changed, ticking};
}

// ---------------------------------------------------------------- sweeps

function projectTabs(project, current) {
  const tab = (name, href) => h("a", {href, class: name === current ? "tab current" : "tab", id: `tab-${name}`}, name);
  return h("nav", {class: "tabs"}, tab("runs", `#/p/${enc(project)}`), tab("sweeps", `#/p/${enc(project)}/sweeps`));
}

const SWEEP_STATES = ["queued", "running", "finished", "failed", "crashed", "preempted"];

function countsText(counts) {
  const keys = Object.keys(counts).sort((a, b) => (SWEEP_STATES.indexOf(a) + 99) % 99 - (SWEEP_STATES.indexOf(b) + 99) % 99 || a.localeCompare(b));
  return keys.map(k => `${counts[k]} ${k}`).join(" · ");
}

function metricText(metric) {
  return metric ? `${metric.name} (${metric.goal})` : "";
}

function sweepsTable(project, sweeps, current) {
  if (!sweeps.length) return h("p", {class: "muted"}, `No sweeps in project ${project}. Create one with localtrack.sweep(…).`);
  return h("div", {class: "table-wrap"}, h("table", {id: "sweeps"},
    h("thead", {}, h("tr", {}, ["sweep", "name", "method", "metric", "runs", "queued", "best run", "best value", "created"].map(x => h("th", {}, x)))),
    h("tbody", {}, sweeps.map(s => h("tr", {class: s.id === current ? "selected" : "", dataset: {id: s.id}},
      h("td", {class: "mono"}, h("a", {href: `#/p/${enc(project)}/sweeps/${enc(s.id)}`}, s.id)),
      h("td", {}, s.name ?? ""), h("td", {}, s.method ?? ""), h("td", {class: "mono"}, metricText(s.metric)),
      h("td", {}, `${s.runs}`, s.runs ? h("span", {class: "muted"}, ` (${countsText(s.counts)})`) : ""),
      h("td", {class: "num"}, s.queue),
      h("td", {class: "mono"}, s.best ? h("a", {href: `#/p/${enc(project)}/r/${enc(s.best.id)}`}, s.best.id) : ""),
      h("td", {class: "num"}, s.best ? fmtNum(s.best.metric) : ""),
      h("td", {}, fmtTime(s.created)))))));
}

function sweepDetail(project, sw) {
  const paramKeys = [...new Set(sw.runs.flatMap(r => Object.keys(flatParams(r.params))))].sort();
  const metricName = sw.metric ? sw.metric.name : "metric";
  const best = sw.best ? sw.best.id : null;
  const runs = h("table", {id: "sweep-runs"},
    h("thead", {}, h("tr", {}, h("th", {}, "run"), h("th", {}, "status"), h("th", {}, "requeues"),
      h("th", {}, "exit status"), paramKeys.map(k => h("th", {class: "cfg"}, k)), h("th", {class: "sum"}, metricName))),
    h("tbody", {}, sw.runs.map(r => {
      const params = flatParams(r.params);
      return h("tr", {class: r.id === best ? "best" : "", dataset: {id: r.id}},
        h("td", {class: "mono"}, h("a", {href: `#/p/${enc(project)}/r/${enc(r.id)}`}, r.id),
          r.id === best ? h("span", {class: "best-mark", title: `best by ${metricName}`}, " ★ best") : ""),
        h("td", {}, stateBadge(r.status)), h("td", {class: "num"}, r.requeues),
        h("td", {class: "num"}, r.exit_status ?? ""),
        paramKeys.map(k => h("td", {class: typeof params[k] === "number" ? "num" : ""}, fmtValue(params[k]))),
        h("td", {class: "num"}, r.metric === null || r.metric === undefined ? "" : fmtNum(r.metric)));
    })));
  const meta = [["sweep", sw.id], ["name", sw.name], ["method", sw.method], ["metric", metricText(sw.metric)],
    ["runs", `${sw.runs.length}` + (sw.runs.length ? ` (${countsText(sw.counts)})` : "")],
    ["best run", best ? `${best} (${metricName} = ${fmtNum(sw.best.metric)})` : "none yet"]]
    .filter(([, x]) => x !== undefined && x !== null && x !== "");
  return h("div", {id: "sweep"},
    h("h2", {}, `Sweep ${sw.id}`),
    h("div", {class: "grid2"},
      h("section", {class: "card"}, h("dl", {class: "meta", id: "sweep-meta"}, meta.map(([k, x]) => [h("dt", {}, k), h("dd", {}, x)])),
        h("h2", {}, "queue"), sw.queue.length
          ? h("ol", {id: "sweep-queue", class: "mono"}, sw.queue.map(id => h("li", {}, h("a", {href: `#/p/${enc(project)}/r/${enc(id)}`}, id))))
          : h("p", {class: "muted", id: "sweep-queue"}, "(empty: no run waits to be requeued)")),
      h("section", {class: "card"}, h("h2", {}, "config"), kvTable("sweep-config", flatParams(sw.config)))),
    h("h2", {}, "runs"),
    sw.runs.length ? h("div", {class: "table-wrap tall"}, runs) : h("p", {class: "muted"}, "(no runs yet)"));
}

function flatParams(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length) flatParams(v, key, out);
    else out[key] = v;
  }
  return out;
}

async function showSweeps(project, sweepId) {
  const v = startView();
  crumbs(h("a", {href: `#/p/${enc(project)}`}, project), h("a", {href: `#/p/${enc(project)}/sweeps`}, "sweeps"),
    ...(sweepId ? [h("span", {}, sweepId)] : []));
  const load = async () => {
    const list = await api("/api/sweeps", {project});
    const one = sweepId ? await api("/api/sweep", {path: `${project}/${sweepId}`}) : null;
    return {list, one};
  };
  let data = await load();
  if (!v.alive) return;
  document.getElementById("store").textContent = data.list.root;
  const app = document.getElementById("app");
  const render = () => app.replaceChildren(projectTabs(project, "sweeps"), h("h1", {}, "Sweeps"),
    sweepsTable(project, data.list.sweeps, sweepId), data.one ? sweepDetail(project, data.one) : "");
  render();
  let shown = JSON.stringify(data);
  every(v, LIST_EVERY_MS, async () => {
    const fresh = await load();
    const text = JSON.stringify(fresh);
    if (!v.alive || text === shown) return;
    data = fresh;
    shown = text;
    render();
  });
}

// ---------------------------------------------------------------- one run

function kvTable(id, obj) {
  const keys = Object.keys(obj).sort();
  if (!keys.length) return h("p", {class: "muted"}, "(empty)");
  return h("table", {class: "kv", id}, h("tbody", {}, keys.map(k => h("tr", {},
    h("td", {class: "mono"}, k), h("td", {}, fmtValue(obj[k]))))));
}

function lifecycle(events) {
  const resumed = events.filter(e => e.event === "resumed");
  const pre = events.filter(e => e.event === "preempted");
  const fin = events.filter(e => e.event === "finished");
  const rewound = events.filter(e => e.event === "rewound");
  const parts = [];
  const start = events.find(e => e.event === "started");
  if (start) parts.push(`started ${fmtTime(start.time)}`);
  if (resumed.length) parts.push(`resumed ${resumed.length}× (at step${resumed.length > 1 ? "s" : ""} ${resumed.map(e => e.step).join(", ")})`);
  if (pre.length) parts.push(`preempted ${pre.length}×`);
  for (const e of rewound) parts.push(`rewound from step ${e.from_step} to ${e.to}`);
  if (fin.length) parts.push(`finished with exit code ${fin[fin.length - 1].exit_code}`);
  return parts.join(" · ");
}

function eventsTable(events) {
  if (!events.length) return h("p", {class: "muted"}, "(no events)");
  const extra = e => Object.entries(e).filter(([k]) => !["event", "time", "step", "pid"].includes(k))
    .map(([k, v]) => `${k}=${fmtValue(v)}`).join("  ");
  return h("table", {id: "events"},
    h("thead", {}, h("tr", {}, ["time", "event", "step", "pid", "details"].map(x => h("th", {}, x)))),
    h("tbody", {}, events.map(e => h("tr", {}, h("td", {}, fmtTime(e.time)), h("td", {}, e.event),
      h("td", {class: "num"}, e.step ?? ""), h("td", {class: "num"}, e.pid ?? ""), h("td", {class: "mono"}, extra(e))))));
}

const ALERT_LEVELS = ["INFO", "WARN", "ERROR"];

/** run.alert()'s alerts (``alert`` events), newest first; null when the run raised none. */
function alertsPanel(events) {
  const alerts = events.filter(e => e.event === "alert").reverse();
  if (!alerts.length) return null;
  return h("section", {class: "card", id: "alerts-card"}, h("h2", {}, `alerts (${alerts.length})`),
    h("table", {id: "alerts"},
      h("thead", {}, h("tr", {}, ["time", "level", "title", "text", "step"].map(x => h("th", {}, x)))),
      h("tbody", {}, alerts.map(e => {
        const level = ALERT_LEVELS.includes(e.level) ? e.level : "INFO";
        return h("tr", {dataset: {level}}, h("td", {}, fmtTime(e.time)),
          h("td", {}, h("span", {class: `alert-level ${level.toLowerCase()}`}, String(e.level ?? ""))),
          h("td", {class: "alert-title"}, String(e.title ?? "")), h("td", {class: "wrap alert-text"}, String(e.text ?? "")),
          h("td", {class: "num"}, e.step ?? ""));
      }))));
}

function fmtSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

async function showRun(project, id) {
  const v = startView();
  const path = `${project}/${id}`;
  crumbs(h("a", {href: `#/p/${enc(project)}`}, project), h("span", {}, id));
  let run = await api("/api/run", {path});
  if (!v.alive) return;
  document.getElementById("store").textContent = run.root;
  const app = document.getElementById("app");
  const head = h("div");
  const body = h("div");
  const chartRoot = h("section", {id: "charts"});
  const mediaRoot = h("section", {id: "media"});
  app.replaceChildren(head, body, h("h2", {}, "charts"), chartRoot, mediaRoot);
  const charts = new Charts(chartRoot, store(project), () => [run], () => PALETTE[0]);
  v.charts.push(charts);

  function render() {
    const m = run.meta;
    head.replaceChildren(h("h1", {}, h("span", {id: "run-name"}, run.name), stateBadge(run.state), h("span", {class: "mono muted"}, run.id)));
    const meta = [["steps", fmtNum(run.steps)], ["duration", fmtDuration(run.duration)], ["created", fmtTime(run.created)],
      ["last write", fmtTime(run.updated)], ["host", m.host], ["program", m.program], ["cwd", m.cwd],
      ["group", run.group], ["job type", run.job_type], ["tags", run.tags.join(", ")], ["notes", run.notes],
      ["fork of", m.fork ? h("span", {id: "fork-of"}, h("a", {href: `#/p/${enc(m.fork.project)}/r/${enc(m.fork.run)}`},
        `${m.fork.project}/${m.fork.run}`), ` at step ${fmtNum(m.fork.step)}`) : null]]
      .filter(([, x]) => x !== undefined && x !== null && x !== "");
    body.replaceChildren(
      alertsPanel(run.events) || "",
      h("div", {class: "grid2"},
        h("section", {class: "card"}, h("dl", {class: "meta"}, meta.map(([k, x]) => [h("dt", {}, k), h("dd", {}, x)]))),
        h("section", {class: "card"}, h("h2", {}, "lifecycle"), h("p", {id: "lifecycle"}, lifecycle(run.events)), eventsTable(run.events))),
      h("div", {class: "grid2"},
        h("section", {class: "card"}, h("h2", {}, "config"), kvTable("config", run.config)),
        h("section", {class: "card"}, h("h2", {}, "summary"), kvTable("summary", run.summary))),
      h("section", {class: "card"}, h("h2", {}, "files"), run.files.length ? h("table", {id: "files"},
        h("thead", {}, h("tr", {}, h("th", {}, "file"), h("th", {}, "size"), h("th", {}, "modified"))),
        h("tbody", {}, run.files.map(f => h("tr", {},
          h("td", {class: "mono"}, h("a", {href: `/api/file?path=${enc(run.path)}&name=${enc(f.name)}`, target: "_blank", rel: "noopener"}, f.name)),
          h("td", {class: "num"}, fmtSize(f.size)), h("td", {}, fmtTime(f.mtime)))))) : h("p", {class: "muted"}, "(no local files)")));
  }
  render();
  await charts.refresh();
  let media = v.alive ? await showMedia(mediaRoot, path) : null;  // media.js
  every(v, STATUS_EVERY_MS, async () => {
    const s = (await api("/api/status", {paths: path}))[path];
    if (!s || (s.updated === run.updated && s.steps === run.steps && s.state === run.state)) return;
    run = await api("/api/run", {path});
    if (!v.alive) return;
    render();
    await charts.refresh();
    const listing = JSON.stringify(await api("/api/media", {path}));
    if (v.alive && listing !== media) media = await showMedia(mediaRoot, path);
  });
}

// ---------------------------------------------------------------- compare

async function showCompare(project, ids) {
  const v = startView();
  crumbs(h("a", {href: `#/p/${enc(project)}`}, project), h("span", {}, "compare"));
  let runs = await Promise.all(ids.map(id => api("/api/run", {path: `${project}/${id}`})));
  if (!v.alive) return;
  const st = store(project);
  const colorOf = path => PALETTE[(st.data.colors?.[path] ?? runs.findIndex(r => r.path === path)) % PALETTE.length];
  let onlyDiff = false;
  const tableRoot = h("div", {class: "table-wrap tall"});
  const chartRoot = h("section", {id: "charts"});
  const toggle = h("input", {type: "checkbox", id: "only-diff", onchange: e => { onlyDiff = e.target.checked; render(); }});
  document.getElementById("app").replaceChildren(
    h("h1", {}, `Compare ${runs.length} runs`),
    h("div", {class: "toolbar"}, h("label", {class: "inline"}, toggle, " only differences"),
      h("span", {class: "muted"}, "highlighted rows differ between the runs")),
    tableRoot, h("h2", {}, "charts"), chartRoot);
  const charts = new Charts(chartRoot, st, () => runs, colorOf);
  v.charts.push(charts);

  function section(title, kind, rowsOf) {
    const keys = [...new Set(runs.flatMap(r => Object.keys(rowsOf(r))))].sort();
    const rows = [h("tr", {class: "section"}, h("th", {colspan: String(runs.length + 1)}, title))];
    for (const k of keys) {
      const vals = runs.map(r => Object.prototype.hasOwnProperty.call(rowsOf(r), k) ? JSON.stringify(rowsOf(r)[k]) : undefined);
      const differs = new Set(vals).size > 1;
      if (onlyDiff && !differs) continue;
      rows.push(h("tr", {class: differs ? "diff" : "", dataset: {key: `${kind}:${k}`}}, h("td", {class: "mono"}, k),
        runs.map((r, i) => vals[i] === undefined ? h("td", {class: "missing"}, "—") : h("td", {class: "wrap"}, fmtValue(rowsOf(r)[k])))));
    }
    return rows;
  }

  function render() {
    const metaOf = r => ({state: r.state, steps: r.steps, duration: fmtDuration(r.duration), host: r.meta.host ?? "",
      group: r.group ?? "", tags: r.tags.join(", "), created: fmtTime(r.created)});
    tableRoot.replaceChildren(h("table", {id: "compare-table"},
      h("thead", {}, h("tr", {}, h("th", {}, "key"), runs.map(r => h("th", {},
        h("span", {class: "swatch", style: `background:${colorOf(r.path)}`}),
        h("a", {href: `#/p/${enc(project)}/r/${enc(r.id)}`}, r.name), " ", h("span", {class: "mono muted"}, r.id))))),
      h("tbody", {}, section("run", "run", metaOf), section("config", "config", r => r.config),
        section("summary", "summary", r => r.summary))));
  }
  render();
  await charts.refresh();
  every(v, STATUS_EVERY_MS, async () => {
    const paths = runs.map(r => r.path);
    const status = await api("/api/status", {paths: paths.join(",")});
    const stale = runs.some(r => { const s = status[r.path]; return s && (s.updated !== r.updated || s.steps !== r.steps || s.state !== r.state); });
    if (!stale) return;
    runs = await Promise.all(paths.map(p => api("/api/run", {path: p})));
    if (!v.alive) return;
    render();
    await charts.refresh();
  });
}

// ---------------------------------------------------------------- router

async function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const parts = hash.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "p" && parts[1]) {
      if (parts[2] === "r" && parts[3]) return await showRun(parts[1], parts[3]);
      if (parts[2] === "sweeps") return await showSweeps(parts[1], parts[3]);
      if (parts[2] === "compare" && parts[3]) return await showCompare(parts[1], parts[3].split(",").filter(Boolean));
      return await showProject(parts[1]);
    }
    return await showHome();
  } catch (err) {
    showError(err);
  }
}

window.addEventListener("hashchange", route);
route();
