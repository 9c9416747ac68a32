// localtrack dashboard: the run page's media panels (images by step, tables, audio, HTML
// source, histograms over steps). Loaded after app.js, whose helpers (h, api, enc,
// plotlyReady, plotText, fmtNum) it uses; the same safety rule holds: store data reaches
// the page as text, attribute values or escaped plotly strings only.
"use strict";

const MEDIA_TABLE_ROWS = 20;    // rows of a table shown on the run page

function mediaUrl(path, key, step, index = 0) {
  return `/api/media/item?path=${enc(path)}&key=${enc(key)}&step=${step}&index=${index}`;
}

/** An image panel: the image of one step, a slider over the steps that logged one. */
function imagePanel(path, m) {
  const last = m.steps.length - 1;
  const img = h("img", {class: "media-img", alt: m.key});
  const label = h("span", {class: "media-step mono"});
  const caption = h("figcaption", {class: "muted"});
  const slider = h("input", {type: "range", min: 0, max: last, value: last, step: 1,
    class: "media-slider", "aria-label": `${m.key} step`, disabled: last === 0});
  function show(i) {
    img.src = mediaUrl(path, m.key, m.steps[i]);
    label.textContent = `step ${fmtNum(m.steps[i])}`;
    caption.textContent = m.captions[i] || "";
  }
  slider.addEventListener("input", () => show(Number(slider.value)));
  show(last);
  return h("figure", {}, img, caption, h("div", {class: "media-controls"}, slider, label));
}

async function tablePanel(path, m) {
  const step = m.steps[m.steps.length - 1];
  const t = await api("/api/media/item", {path, key: m.key, step});
  const rows = t.data.slice(0, MEDIA_TABLE_ROWS);
  return h("div", {class: "media-table"},
    h("p", {class: "muted"}, `step ${fmtNum(step)} · ${fmtNum(t.rows)} rows` +
      (t.rows > rows.length ? ` (first ${rows.length} shown)` : "")),
    h("table", {}, h("thead", {}, h("tr", {}, t.columns.map(c => h("th", {}, c)))),
      h("tbody", {}, rows.map(r => h("tr", {}, r.map(c => h("td", {}, c ?? "")))))));
}

function audioPanel(path, m) {
  const step = m.steps[m.steps.length - 1];
  return h("div", {}, h("audio", {controls: true, preload: "none", src: mediaUrl(path, m.key, step)}),
    h("p", {class: "muted"}, `step ${fmtNum(step)}`));
}

async function htmlPanel(path, m) {
  const step = m.steps[m.steps.length - 1];
  const res = await fetch(mediaUrl(path, m.key, step), {cache: "no-store"});
  return h("div", {}, h("p", {class: "muted"}, `step ${fmtNum(step)} · HTML source`),
    h("pre", {class: "media-html"}, await res.text()));
}

async function histogramPanel(path, key) {
  const d = await api("/api/histograms", {path, key});
  const el = h("div", {class: "media-hist"});
  const centres = d.edges.slice(1).map((e, i) => (e + d.edges[i]) / 2);
  const z = centres.map((_, b) => d.counts.map(row => row[b]));  // bins x steps
  const Plotly = await plotlyReady;
  Plotly.newPlot(el, [{type: "heatmap", x: d.steps, y: centres, z, colorscale: "Viridis",
    hovertemplate: "step %{x}<br>value %{y:.3g}<br>count %{z}<extra></extra>"}],
  {margin: {l: 50, r: 10, t: 10, b: 40}, height: 260, xaxis: {title: {text: "step"}}},
  {displaylogo: false, responsive: true});
  return el;
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
    if (m.chart) body = await plotPanel(path, m);  // plots.js
    else if (m.type === "image") body = imagePanel(path, m);
    else if (m.type === "table") body = await tablePanel(path, m);
    else if (m.type === "audio") body = audioPanel(path, m);
    else if (m.type === "html") body = await htmlPanel(path, m);
    else body = h("p", {class: "muted"}, `${m.type} at ${m.steps.length} step(s)`);
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
