// localtrack dashboard: the run page's media panels (images, tables, audio, HTML source and
// videos by step, histograms over steps). Loaded after app.js, whose helpers (h, api, enc,
// plotlyReady, plotText, fmtNum) it uses; the same safety rule holds: store data reaches
// the page as text, attribute values or escaped plotly strings only.
"use strict";

const MEDIA_TABLE_ROWS = 20;    // rows of a table shown on the run page
// The step a slider was moved back to, by "path|key": a live run's panels are rebuilt as it
// logs, and should stay where the user put them (a slider at the last step follows the run).
const mediaPinned = new Map();

/**
 * An item's URL. v is its step's version (see _media.version): the server lets the browser
 * keep such a URL for good, so moving a slider back to a step shown before fetches nothing.
 */
function mediaUrl(path, m, i, index = 0, cell = null) {
  const at = cell ? `&row=${cell[0]}&col=${cell[1]}` : "";
  const by = m.labels ? `&label=${enc(m.labels[i])}` : "";   // a shared run's writer
  return `/api/media/item?path=${enc(path)}&key=${enc(m.key)}&step=${m.steps[i]}&index=${index}${at}${by}` +
    `&v=${enc(m.versions[i])}`;
}

async function mediaFetch(url, as) {
  const res = await fetch(url);   // the browser's cache: the server says how long it holds
  if (!res.ok) {
    const body = await res.json().catch(() => ({error: res.statusText}));
    throw new Error(body.error || res.statusText);
  }
  return as === "json" ? res.json() : res.text();
}

// The overlays (box groups, masks) hidden with their checkboxes, by "path|key": moving the
// slider keeps them hidden.
const overlayHidden = new Map();

/** Percent of ``whole``, for a CSS length. */
function pct(part, whole) {
  return `${(100 * part / whole).toFixed(4)}%`;
}

/** The set of overlays hidden under ``pin`` (made empty the first time). */
function hiddenOverlays(pin) {
  if (!overlayHidden.has(pin)) overlayHidden.set(pin, new Set());
  return overlayHidden.get(pin);
}

/**
 * The layers drawn over the image at ``url`` from its overlay JSON ``o`` (see _media.overlay),
 * as W&B draws them: a mask is a class-coloured half-transparent PNG (mask_png) the size of
 * the image, a box an outlined rectangle in its class's colour with its caption (or class
 * label) above it. Each part: {name ("mask:<name>" or "boxes:<group>"), text, count (boxes),
 * classes (a mask's), layer}; a part whose name is in ``hidden`` starts hidden.
 */
function overlayParts(url, o, alt, hidden) {
  const parts = [];
  for (const [name, classes] of Object.entries(o.masks)) {
    parts.push({name: `mask:${name}`, text: `mask ${name}`, classes,
      layer: h("img", {class: "media-mask", alt: `${alt} mask ${name}`, dataset: {mask: name},
        src: `${url}&mask=${enc(name)}`})});
  }
  for (const [group, boxes] of Object.entries(o.boxes)) {
    parts.push({name: `boxes:${group}`, text: `boxes ${group}`, count: boxes.length, classes: [],
      layer: h("div", {class: "media-boxes", dataset: {group}}, boxes.map(b => {
        const scores = Object.entries(b.scores).map(([k, v]) => `${k} ${fmtNum(v)}`).join(", ");
        return h("div", {class: "media-box", title: [b.label, scores].filter(Boolean).join(" · "),
          style: `left: ${pct(b.x, o.w)}; top: ${pct(b.y, o.h)}; width: ${pct(b.w, o.w)}; ` +
            `height: ${pct(b.h, o.h)}; --c: ${b.colour}`},
        b.label ? h("span", {class: "media-box-label"}, b.label) : "");
      }))});
  }
  for (const p of parts) p.layer.hidden = hidden.has(p.name);
  return parts;
}

/**
 * The checkbox of one overlay: it shows or hides each of ``layers()`` and remembers it in
 * ``hidden``; ``classes`` (a mask's) are its legend.
 */
function overlayToggle(name, text, classes, hidden, layers) {
  const box = h("input", {type: "checkbox", checked: !hidden.has(name), onchange: () => {
    if (box.checked) hidden.delete(name); else hidden.add(name);
    for (const layer of layers()) layer.hidden = !box.checked;
  }});
  return h("label", {class: "overlay-toggle", dataset: {overlay: name}}, box, " ", text,
    classes.map(c => h("span", {class: "overlay-class", style: `--c: ${c.colour}`}, c.label)));
}

/** An image with its layers (overlayParts) stacked over it. */
function overlayStack(url, alt, parts, cls = "media-stack") {
  return h("div", {class: cls}, h("img", {class: "media-img", alt, src: url}), parts.map(p => p.layer));
}

/**
 * An image with its boxes and masks drawn over it (overlayParts), and a checkbox per box
 * group and per mask that hides it, kept as the slider moves (by "path|key").
 */
async function overlaidImage(path, m, i, n) {
  const url = mediaUrl(path, m, i, n);
  const o = await mediaFetch(url + "&overlay=1", "json");
  const hidden = hiddenOverlays(`${path}|${m.key}`);
  const parts = overlayParts(url, o, m.key, hidden);
  return h("div", {class: "media-overlaid"}, overlayStack(url, `${m.key} ${n}`, parts),
    h("div", {class: "overlay-toggles"}, parts.map(p =>
      overlayToggle(p.name, p.count === undefined ? p.text : `${p.text} (${p.count})`, p.classes,
        hidden, () => [p.layer]))));
}

/**
 * A table: its first rows, an image cell as a thumbnail; an image cell with boxes or masks
 * drawn larger with them over it (overlayParts), and a checkbox per box group and mask in its
 * column's header that hides that overlay in every cell of the column (kept as the slider
 * moves, by "path|key|column"); a mask's legend there is every class its column's cells hold.
 */
async function tableView(path, m, i, n) {
  const t = await mediaFetch(mediaUrl(path, m, i, n), "json");
  const rows = t.data.slice(0, MEDIA_TABLE_ROWS);
  async function cell(c, col) {   // [what the cell shows, its overlays]
    if (!(c && typeof c === "object" && Array.isArray(c.image))) return [c ?? "", []];
    const url = mediaUrl(path, m, i, n, c.image);
    const alt = `${m.key} cell ${c.image.join(",")}`;
    if (!c.overlaid) return [h("img", {class: "media-thumb", alt, loading: "lazy", src: url}), []];
    const o = await mediaFetch(url + "&overlay=1", "json");
    const parts = overlayParts(url, o, alt, hiddenOverlays(`${path}|${m.key}|${col}`));
    return [overlayStack(url, alt, parts, "media-stack media-cell"), parts];
  }
  const body = await Promise.all(rows.map(r => Promise.all(r.map((c, col) => cell(c, col)))));
  const columns = new Map();   // column -> Map(overlay name -> {text, classes, layers}), in row order
  for (const r of body) {
    r.forEach(([, parts], col) => {
      if (!parts.length) return;
      if (!columns.has(col)) columns.set(col, new Map());
      const known = columns.get(col);
      for (const p of parts) {
        if (!known.has(p.name)) known.set(p.name, {text: p.text, classes: new Map(), layers: []});
        const k = known.get(p.name);
        k.layers.push(p.layer);
        for (const cl of p.classes) k.classes.set(cl.id, cl);
      }
    });
  }
  const head = t.columns.map((name, col) => {
    const known = columns.get(col);
    const hidden = hiddenOverlays(`${path}|${m.key}|${col}`);
    return h("th", {}, name, known ? h("div", {class: "overlay-toggles"}, [...known].map(([k, o]) =>
      overlayToggle(k, o.text, [...o.classes.values()].sort((a, b) => a.id - b.id), hidden, () => o.layers))) : "");
  });
  return h("div", {class: "media-table"},
    h("p", {class: "muted"}, `${fmtNum(t.rows)} rows` + (t.rows > rows.length ? ` (first ${rows.length} shown)` : "")),
    h("table", {}, h("thead", {}, h("tr", {}, head)),
      h("tbody", {}, body.map(r => h("tr", {}, r.map(([c]) => h("td", {}, c)))))));
}

/** What one item of a step looks like; async where the page must fetch it to show it. */
const ITEM_VIEWS = {
  image: (path, m, i, n) => (m.overlaid && m.overlaid[i] ? overlaidImage(path, m, i, n)
    : h("img", {class: "media-img", alt: `${m.key} ${n}`, src: mediaUrl(path, m, i, n)})),
  audio: (path, m, i, n) => h("audio", {controls: true, preload: "none", src: mediaUrl(path, m, i, n)}),
  video: (path, m, i, n) => m.fmt === "gif"
    ? h("img", {class: "media-img", alt: `${m.key} ${n}`, src: mediaUrl(path, m, i, n)})
    : h("video", {controls: true, preload: "metadata", class: "media-video", src: mediaUrl(path, m, i, n)}),
  html: async (path, m, i, n) => h("pre", {class: "media-html"}, await mediaFetch(mediaUrl(path, m, i, n), "text")),
  table: tableView,
};

/**
 * The step slider of a panel over the steps of ``m``: at the last step first, or at the step
 * it was moved back to (mediaPinned); moving it calls ``show(i)`` (a promise; ``fail`` gets
 * its error). Returns the slider and the index to show first.
 */
function stepSlider(path, m, show, fail) {
  const last = m.steps.length - 1;
  const pin = `${path}|${m.key}`;
  const pinned = m.steps.indexOf(mediaPinned.get(pin));
  const first = pinned >= 0 ? pinned : last;
  const slider = h("input", {type: "range", min: 0, max: last, value: first, step: 1,
    class: "media-slider", "aria-label": `${m.key} step`, disabled: last === 0});
  slider.addEventListener("input", () => {
    const i = Number(slider.value);
    if (i === last) mediaPinned.delete(pin); else mediaPinned.set(pin, m.steps[i]);
    show(i).catch(fail);
  });
  return {slider, first};
}

/**
 * A panel for one media key: every item of one step (a list of media is all of them), a
 * slider over the steps that logged one, the last step first (or the one it was moved to). A
 * slow answer for a step the slider has since left is dropped.
 */
async function stepPanel(path, m) {
  const view = ITEM_VIEWS[m.type];
  const items = h("div", {class: "media-items"});
  const label = h("span", {class: "media-step mono"});
  const caption = h("figcaption", {class: "muted"});
  const {slider, first} = stepSlider(path, m, i => show(i),
    err => items.replaceChildren(h("p", {class: "error"}, String(err.message || err))));
  let shown = 0;
  async function show(i) {
    const ticket = ++shown;
    const many = m.counts[i] > 1;   // a list of media: each item with its own caption
    label.textContent = `step ${fmtNum(m.steps[i])}` + (m.labels ? ` · ${m.labels[i]}` : "") +
      (many ? ` · ${m.counts[i]} items` : "");
    caption.textContent = many ? "" : m.captions[i] || "";
    const n = Array.from({length: m.counts[i]}, (_, k) => k);
    const built = await Promise.all(n.map(async k => {
      const el = await view(path, m, i, k);
      const cap = m.item_captions[i][k];
      return many ? h("figure", {class: "media-item"}, el, cap ? h("figcaption", {class: "muted"}, cap) : "") : el;
    }));
    if (ticket === shown) items.replaceChildren(...built);
  }
  await show(first);
  return h("figure", {}, items, caption, h("div", {class: "media-controls"}, slider, label));
}

/**
 * The heatmap of the histograms ``rows`` (indices into d.steps and d.counts) of the answer
 * ``d`` of /api/histograms: counts over steps, on d's grid of bins. ``common``: the step
 * range and the largest count of several heatmaps that are to compare.
 */
async function heatmap(d, rows, common = null, height = 260) {
  const el = h("div", {class: "media-hist"});
  const centres = d.edges.slice(1).map((e, i) => (e + d.edges[i]) / 2);
  const z = centres.map((_, b) => rows.map(i => d.counts[i][b]));  // bins x steps
  const trace = {type: "heatmap", x: rows.map(i => d.steps[i]), y: centres, z, colorscale: "Viridis",
    hovertemplate: "step %{x}<br>value %{y:.3g}<br>count %{z}<extra></extra>"};
  const xaxis = {title: {text: "step"}};
  if (common) {
    Object.assign(trace, {zmin: 0, zmax: common.zmax});
    if (common.last > common.first) xaxis.range = [common.first - 0.5, common.last + 0.5];
  }
  const Plotly = await plotlyReady;
  Plotly.newPlot(el, [trace], {margin: {l: 50, r: 10, t: 10, b: 40}, height, xaxis},
    {displaylogo: false, responsive: true});
  return el;
}

/** Up to this many writers get a heatmap each; a run with more shows one, chosen in a list. */
const HEATMAP_WRITERS = 8;

/**
 * A histogram key's panel: its histograms over steps as a heatmap. A shared run's writers
 * each log their own histograms (a step may have one per writer): a heatmap per writer,
 * headed by its label, all on one grid of bins, one step range and one colour scale, so
 * they compare at a glance; past HEATMAP_WRITERS writers (64 ranks would be 64 plots), the
 * heatmap of the writer chosen in a list, on the same range and scale.
 */
async function histogramPanel(path, key) {
  const d = await api("/api/histograms", {path, key});
  const all = d.steps.map((_, i) => i);
  if (!d.labels) return heatmap(d, all);
  let first = Infinity, last = -Infinity, zmax = 0;
  for (const i of all) {   // (no spread: a long run's counts would overflow the call stack)
    first = Math.min(first, d.steps[i]);
    last = Math.max(last, d.steps[i]);
    for (const n of d.counts[i]) zmax = Math.max(zmax, n);
  }
  const labels = [...new Set(d.labels)].sort();
  const writer = async (label, height) =>
    h("div", {class: "media-hist-writer", dataset: {label}}, h("h4", {class: "mono"}, label),
      await heatmap(d, all.filter(i => d.labels[i] === label), {first, last, zmax}, height));
  if (labels.length <= HEATMAP_WRITERS) {
    const height = labels.length > 1 ? 180 : 260;
    return h("div", {class: "media-hists"}, await Promise.all(labels.map(label => writer(label, height))));
  }
  const shown = h("div", {}, await writer(labels[0], 260));
  let ticket = 0;  // the last choice wins, however long an earlier one takes to draw
  const pick = h("select", {class: "media-hist-pick", onchange: async e => {
    const mine = ++ticket;
    const el = await writer(e.target.value, 260);
    if (mine === ticket) shown.replaceChildren(el);
  }}, labels.map(label => h("option", {value: label}, label)));
  return h("div", {class: "media-hists"},
    h("label", {}, `${labels.length} writers, one shown: `, pick), shown);
}

/** Fill ``root`` with a panel per media key and per histogram key of the run ``path``. */
async function showMedia(root, path) {
  try {
    return await mediaPanels(root, path);
  } catch (err) {  // a damaged item: say so here, the rest of the run page stays
    root.replaceChildren(h("h2", {}, "media"), h("p", {class: "error", id: "media-error"}, String(err.message || err)));
    return null;
  }
}

async function mediaPanels(root, path) {
  const listing = await api("/api/media", {path});
  const panels = [];
  for (const m of listing.media) {
    let body;
    try {  // one key that cannot be shown (a damaged item) leaves the others drawn
      body = m.chart ? await plotPanel(path, m)  // plots.js
        : ITEM_VIEWS[m.type] ? await stepPanel(path, m)
        : h("p", {class: "muted"}, `${m.type} at ${m.steps.length} step(s)`);
    } catch (err) {
      body = h("p", {class: "error"}, String(err.message || err));
    }
    panels.push(h("section", {class: "card media-panel", dataset: {key: m.key, type: m.type}},
      h("h3", {class: "mono"}, m.key), body));
  }
  for (const key of listing.histograms) {
    panels.push(h("section", {class: "card media-panel", dataset: {key, type: "histogram"}},
      h("h3", {class: "mono"}, key), await histogramPanel(path, key)));
  }
  root.replaceChildren(...(panels.length ? [h("h2", {}, "media"), h("div", {class: "media-grid"}, panels)] : []));
  return JSON.stringify(listing);
}
