// localtrack dashboard: charts logged with localtrack.plot.* (W&B's wandb.plot), drawn on the
// run page from their table and spec (see localtrack/_plots.py). Loaded after app.js and
// media.js, whose helpers (h, plotlyReady, plotText, fmtNum, mediaFetch, mediaUrl, stepSlider,
// stepPanel, ITEM_VIEWS) it uses; the
// same safety rule holds: store data reaches the page as text, attribute values or escaped
// plotly strings only.
"use strict";

/** Rows grouped by the value of column ``i`` (one group of all rows when ``i`` is -1). */
function plotGroups(rows, i) {
  const groups = new Map();
  for (const r of rows) {
    const k = i < 0 ? "" : String(r[i]);
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(r);
  }
  return groups;
}

/** One line per group of ``rows`` by column ``g``: ``y`` over ``x`` (sorted by x when x is
 * numeric; else in row order, x as categories). */
function plotLines(rows, x, y, g, mode) {
  return [...plotGroups(rows, g)].map(([name, rs]) => {
    let pts = rs.filter(r => typeof r[y] === "number" && r[x] !== null && r[x] !== undefined);
    if (pts.every(r => typeof r[x] === "number")) pts = pts.sort((a, b) => a[x] - b[x]);
    return {type: "scatter", mode, name: plotText(name), showlegend: g >= 0,
      x: pts.map(r => (typeof r[x] === "number" ? r[x] : plotText(r[x]))), y: pts.map(r => r[y])};
  });
}

/** The confusion matrix as one heatmap: predicted classes across, actual ones down. */
function plotMatrix(rows, a, p, n) {
  const actual = [...new Set(rows.map(r => String(r[a])))];
  const predicted = [...new Set(rows.map(r => String(r[p])))];
  const z = actual.map(() => predicted.map(() => 0));
  for (const r of rows) z[actual.indexOf(String(r[a]))][predicted.indexOf(String(r[p]))] += Number(r[n]) || 0;
  return [{type: "heatmap", x: predicted.map(plotText), y: actual.map(plotText), z,
    colorscale: "Blues", texttemplate: "%{z}",
    hovertemplate: "actual %{y}<br>predicted %{x}<br>%{z}<extra></extra>"}];
}

/** Plotly traces and axis titles of a chart, or null for a spec this page does not draw. */
function plotTraces(t) {
  const spec = t.chart, f = spec.fields || {}, s = spec.string_fields || {};
  const col = name => (name === null || name === undefined ? -1 : t.columns.indexOf(name));
  const rows = t.data;
  switch (spec.spec_name) {
    case "wandb/line/v0":
      return {traces: plotLines(rows, col(f.x), col(f.y), col(f.stroke), "lines"), x: f.x, y: f.y};
    case "wandb/scatter/v0":
      return {traces: plotLines(rows, col(f.x), col(f.y), -1, "markers"), x: f.x, y: f.y};
    case "wandb/lineseries/v0":
      return {traces: plotLines(rows, col(f.step), col(f.lineVal), col(f.lineKey), "lines"),
        x: s.xname || f.step, y: ""};
    case "wandb/area-under-curve/v0":
      return {traces: plotLines(rows, col(f.x), col(f.y), col(f.class), "lines"),
        x: s["x-axis-title"] || f.x, y: s["y-axis-title"] || f.y};
    case "wandb/bar/v0":
      return {traces: [{type: "bar", x: rows.map(r => plotText(r[col(f.label)])),
        y: rows.map(r => r[col(f.value)])}], x: f.label, y: f.value};
    case "wandb/histogram/v0":
      return {traces: [{type: "histogram", x: rows.map(r => r[col(f.value)])
        .filter(v => typeof v === "number")}], x: f.value, y: "count"};
    case "wandb/confusion_matrix/v1":
      return {traces: plotMatrix(rows, col(f.Actual), col(f.Predicted), col(f.nPredictions)),
        x: "Predicted", y: "Actual"};
    default:
      return null;
  }
}

/**
 * A chart panel: the chart of one step that logged one under the key ``m.key``, the last one
 * first, with a step slider as the other media panels have (stepSlider in media.js). A step
 * whose table has no chart this page draws (a custom Vega spec, a plain table) shows its
 * table; a key whose shown step is such a table is a table panel (stepPanel).
 */
async function plotPanel(path, m) {
  const el = h("div", {class: "plot-chart"});
  const other = h("div", {class: "media-items"});
  const note = h("p", {class: "muted"});
  const label = h("span", {class: "media-step mono"});
  const fail = err => other.replaceChildren(h("p", {class: "error"}, String(err.message || err)));
  const {slider, first} = stepSlider(path, m, i => show(i), fail);
  const firstTable = await mediaFetch(mediaUrl(path, m, first), "json");
  if (!firstTable.chart || !plotTraces(firstTable)) return stepPanel(path, m);
  const Plotly = await plotlyReady;
  let shown = 0;
  async function show(i, known) {
    const ticket = ++shown;
    const t = known || await mediaFetch(mediaUrl(path, m, i), "json");
    if (ticket !== shown) return;  // the slider has moved on
    label.textContent = `step ${fmtNum(m.steps[i])}`;
    const drawn = t.chart ? plotTraces(t) : null;
    if (!drawn) {
      el.hidden = true;
      note.textContent = t.chart ? `a ${t.chart.spec_name} chart, shown as its table` : "a table";
      other.replaceChildren(await ITEM_VIEWS.table(path, m, i, 0));
      return;
    }
    el.hidden = false;
    other.replaceChildren();
    const title = (t.chart.string_fields || {}).title;
    el.dataset.spec = t.chart.spec_name;
    el.dataset.step = m.steps[i];
    await Plotly.react(el, drawn.traces, {
      margin: {l: 50, r: 10, t: title ? 30 : 10, b: 40}, height: 300,
      title: title ? {text: plotText(title), font: {size: 13}} : undefined,
      xaxis: {title: {text: plotText(drawn.x || "")}}, yaxis: {title: {text: plotText(drawn.y || "")}},
    }, {displaylogo: false, responsive: true});
    note.textContent = `${fmtNum(t.rows)} rows` +
      (t.rows > t.data.length ? ` (first ${fmtNum(t.data.length)} drawn)` : "");
  }
  await show(first, firstTable);
  return h("div", {}, el, other, note, h("div", {class: "media-controls"}, slider, label));
}
