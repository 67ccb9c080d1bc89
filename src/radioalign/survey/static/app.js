// The search page's logic: plain JavaScript and the vendored sampjs (static/vendor/samp.js).
// The page requests nothing outside this server by itself: the links to Aladin, SIMBAD,
// NED and the Legacy Survey are plain links, and the SAMP hub on this computer
// (localhost:21012, run by TOPCAT or Aladin) is contacted only when a button asks.
//
// The query shown lives in the URL (?text=...|like=ID|upload=TOKEN, k, ra, dec, radius,
// frame, and mode=label in the labelling mode): a new query pushes a history entry, the
// back button goes to the previous one (popstate), and a reload or a shared link reruns
// the query in its URL.
//
// The labelling mode gives every result one button (and one key, 1 to 9) per class; each
// label is stored at once (POST /api/labels), U undoes the last one, and when every source
// of a batch of suggestions is labelled (or on T) the probe retrains on the server, in the
// background, while the page polls /api/probe for its cross-validated F1 and coverage.
"use strict";

const $ = (id) => document.getElementById(id);
const QUERY_KINDS = ["text", "like", "upload"];
const CONE_FIELDS = ["ra", "dec", "radius"];
let hips = "CDS/P/NVSS";
let shown = { query: null, results: [] };  // the query (URLSearchParams) whose results are shown

function fmt(value, digits) {
  return value === null || value === undefined ? "\u2014" : Number(value).toFixed(digits);
}

// An angle in degrees as sexagesimal: RA in hours (12h34m56.7s), Dec in degrees (+12°34′56″).
function sexagesimal(degrees, hours) {
  const digits = hours ? 1 : 0;
  const scale = 10 ** digits;
  let units = Math.round((Math.abs(degrees) / (hours ? 15 : 1)) * 3600 * scale);
  if (hours) units %= 24 * 3600 * scale;
  const whole = Math.floor(units / (3600 * scale));
  const minutes = Math.floor((units % (3600 * scale)) / (60 * scale));
  const seconds = (units % (60 * scale)) / scale;
  const two = (n) => String(n).padStart(2, "0");
  const sec = seconds.toFixed(digits).padStart(digits ? 3 + digits : 2, "0");
  if (hours) return `${two(whole)}h${two(minutes)}m${sec}s`;
  return `${degrees < 0 && units > 0 ? "-" : "+"}${two(whole)}\u00b0${two(minutes)}\u2032${sec}\u2033`;
}

// Plain links to other services at a position (opened by the user, never fetched here).
function positionLinks(ra, dec) {
  const pos = `${ra.toFixed(6)} ${dec >= 0 ? "+" : ""}${dec.toFixed(6)}`;
  const q = encodeURIComponent;
  return {
    aladin: `https://aladin.cds.unistra.fr/AladinLite/?target=${q(pos)}&fov=0.1&survey=${q(hips)}`,
    simbad: `https://simbad.cds.unistra.fr/simbad/sim-coo?Coord=${q(pos)}&CooFrame=ICRS&CooEpoch=2000&CooEqui=2000&Radius=1&Radius.unit=arcmin&submit=submit+query`,
    ned: `https://ned.ipac.caltech.edu/conesearch?search_type=Near%20Position%20Search&in_csys=Equatorial&in_equinox=J2000&coordinates=${q(`${ra.toFixed(6)}d ${dec.toFixed(6)}d`)}&ra=${ra.toFixed(6)}&dec=${dec.toFixed(6)}&radius=1`,
    legacy: `https://www.legacysurvey.org/viewer?ra=${ra.toFixed(6)}&dec=${dec.toFixed(6)}&zoom=14`,
  };
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function card(result, index) {
  const node = $("card-template").content.firstElementChild.cloneNode(true);
  const placed = result.ra !== null && result.ra !== undefined && result.dec !== null && result.dec !== undefined;
  node.dataset.id = result.id;
  node.setAttribute("aria-label", `result ${index + 1}: ${result.name}`);
  node.querySelector(".thumb").src = `/api/thumb/${encodeURIComponent(result.id)}`;
  node.querySelector(".thumb").alt = `thumbnail of ${result.name}`;
  node.querySelector(".name").textContent = result.name;
  node.querySelector(".name").title = result.source || "";
  node.querySelector(".deg").textContent = placed ? `RA ${fmt(result.ra, 4)}\u00b0  Dec ${fmt(result.dec, 4)}\u00b0` : "RA, Dec unknown (no WCS)";
  node.querySelector(".hms").textContent = placed ? `${sexagesimal(result.ra, true)} ${sexagesimal(result.dec, false)}` : "";
  node.querySelector(".score").textContent = result.priority === undefined ? `score ${fmt(result.score, 3)}`
    : `${result.by === "query" ? "similarity" : "uncertainty"} ${fmt(result.priority, 3)}`;
  node.querySelector(".label").textContent = labelText(result);
  const links = node.querySelector(".links");
  if (placed) {
    for (const [name, href] of Object.entries(positionLinks(result.ra, result.dec))) {
      const a = links.querySelector(`.${name}`);
      a.href = href;
      a.setAttribute("aria-label", `${a.textContent} at the position of ${result.name} (new tab)`);
    }
  } else {
    links.remove();
  }
  const more = () => search(withQuery({ like: result.id }), { push: true, what: `sources like ${result.name}` });
  node.querySelector(".more").addEventListener("click", more);
  node.querySelector(".more").setAttribute("aria-label", `more like ${result.name}`);
  if (labelMode) labelControls(node, result);
  node.addEventListener("keydown", (event) => {
    if (event.target !== node) return;  // keys on the card's own links and button act on those
    if (event.key === "Enter") { event.preventDefault(); more(); }
    else if (event.key === " ") { event.preventDefault(); select(node, result); }
    else if (labelMode && /^[1-9]$/.test(event.key) && labelling.classes[Number(event.key) - 1]) {
      event.preventDefault();
      giveLabel(node, result, labelling.classes[Number(event.key) - 1], true);
    }
  });
  node.addEventListener("click", (event) => { if (!event.target.closest("a, button")) select(node, result); });
  return node;
}

// A result chosen by a click (or Space): marked, and SAMP tools pointed at it when connected.
function select(node, result) {
  for (const other of document.querySelectorAll(".card.selected")) other.classList.remove("selected");
  node.classList.add("selected");
  if (result.ra !== null && result.ra !== undefined && sampConnected()) {
    sampNotify("coord.pointAt.sky", { ra: String(result.ra), dec: String(result.dec) }, `pointed SAMP tools at ${result.name}`);
  }
}

// What a result's label line says: the zero-shot label, the probe's set, or a suggestion's best guess.
function labelText(result) {
  if (result.best) {
    const p = result[`cal_p_${result.best.replace(/\W+/g, "_").replace(/^_+|_+$/g, "")}`];
    return `guess ${result.best}${p === undefined || p === null ? "" : ` (p ${fmt(p, 2)})`}`;
  }
  const parts = [];
  if (result.label) parts.push(`${result.label} (p ${fmt(result.probability, 2)})`);
  if (result.prediction_set) parts.push(`probe: ${result.prediction_set}`);
  return parts.join(" \u00b7 ") || "unlabelled";
}

function show(query, results, what) {
  shown = { query, results };
  suggestions = false;
  $("results").replaceChildren(...results.map(card));
  setStatus(`${results.length} result${results.length === 1 ? "" : "s"}: ${what}`);
  setExports(query);
}

function clearResults() {
  shown = { query: null, results: [] };
  $("results").replaceChildren();
  setStatus("");
  setExports(null);
}

// The export links and the SAMP button follow the query shown.
function setExports(query) {
  for (const [id, path] of [["export-csv", "/api/results.csv"], ["export-vot", "/api/results.vot"]]) {
    if (query) { $(id).href = `${path}?${query}`; $(id).removeAttribute("aria-disabled"); }
    else { $(id).removeAttribute("href"); $(id).setAttribute("aria-disabled", "true"); }
  }
  $("samp-send").disabled = !query;
}

async function fetchJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return { body, response };
}

// -- the query and the URL -------------------------------------------------

// The form's k and cone with one query ({text}, {like} or {upload}), as URL parameters.
function withQuery(kind) {
  const query = new URLSearchParams(kind);
  query.set("k", $("k").value || "12");
  const cone = CONE_FIELDS.map((id) => $(id).value.trim());
  if (cone.every(Boolean)) {
    CONE_FIELDS.forEach((id, i) => query.set(id, cone[i]));
    if ($("frame").value !== "icrs") query.set("frame", $("frame").value);
  }
  return query;
}

// The query of a URL's parameters (only the known ones, in a fixed order), or null.
function queryOf(params) {
  const kind = QUERY_KINDS.find((key) => params.get(key));
  if (!kind) return null;
  const query = new URLSearchParams({ [kind]: params.get(kind) });
  query.set("k", params.get("k") || "12");
  for (const key of [...CONE_FIELDS, "frame", "mode"]) if (params.get(key)) query.set(key, params.get(key));
  return query;
}

function describe(query, results) {
  if (query.get("text")) return `\u201c${query.get("text")}\u201d`;
  if (query.get("like")) {
    const first = results[0];
    const same = first && (first.id === query.get("like") || first.name === query.get("like"));
    return `sources like ${same ? first.name : query.get("like")}`;
  }
  return "images like the uploaded image";
}

// Fill the form from a query, so that what is shown is what the form says.
function fillForm(query) {
  $("query").value = query ? query.get("text") || "" : "";
  $("image").value = "";
  $("k").value = (query && query.get("k")) || "12";
  for (const id of CONE_FIELDS) $(id).value = (query && query.get(id)) || "";
  $("frame").value = (query && query.get("frame")) || "icrs";
  if (query && query.get("ra")) $("cone").open = true;
}

function remember(query, what, push) {
  if (labelMode) query.set("mode", "label");
  const url = `${location.pathname}?${query}`;
  if (push && `?${query}` !== location.search) history.pushState({ what }, "", url);
  else history.replaceState({ what }, "", url);
}

// One query at a time: a slower, older answer never replaces a newer one.
let generation = 0;

async function search(query, { push = false, what = null } = {}) {
  const mine = ++generation;
  setStatus(`searching ${what || describe(query, [])}\u2026`);
  try {
    const { body } = await fetchJSON(`/api/search?${query}`);
    if (mine !== generation) return;
    const label = what || describe(query, body);
    remember(query, label, push);
    show(query, body, label);
  } catch (err) {
    if (mine === generation) setStatus(err.message, true);
  }
}

async function searchUpload(file) {
  const mine = ++generation;
  const what = `images like ${file.name}`;
  setStatus(`searching ${what}\u2026`);
  const form = new FormData();
  form.append("image", file);
  const fields = withQuery({ upload: "-" });
  for (const [key, value] of fields) if (key !== "upload") form.append(key, value);
  try {
    const { body, response } = await fetchJSON("/api/search", { method: "POST", body: form });
    if (mine !== generation) return;
    fields.set("upload", response.headers.get("X-Radioalign-Upload"));
    remember(fields, what, true);  // the server holds the upload: the URL reruns it while it does
    show(fields, body, what);
  } catch (err) {
    if (mine === generation) setStatus(err.message, true);
  }
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("image").files[0];
  const text = $("query").value.trim();
  if (file) searchUpload(file);
  else if (text) search(withQuery({ text }), { push: true });
  else setStatus("type a description or choose an image", true);
});

$("image").addEventListener("change", () => { if ($("image").files[0]) $("query").value = ""; });
$("query").addEventListener("input", () => { if ($("query").value) $("image").value = ""; });

// Back and forward: show the query of the URL the browser went to.
window.addEventListener("popstate", () => {
  const query = queryOf(new URLSearchParams(location.search));
  fillForm(query);
  if (query) search(query, { what: history.state && history.state.what });  // this entry's own words
  else { generation++; clearResults(); }
});

// -- SAMP ------------------------------------------------------------------

let connector = null;

function sampConnected() {
  return Boolean(connector && connector.connection);
}

function sampConnector() {
  if (!connector) {
    connector = new samp.Connector("radioalign", {
      "samp.name": "radioalign",
      "samp.description.text": "radioalign search page: sources of a radio survey store found by text or image",
      "samp.documentation.url": location.origin + "/",
    });
    window.addEventListener("pagehide", () => connector.unregister());
  }
  return connector;
}

// Send a message to every SAMP client (registering with the hub first if need be).
function sampNotify(mtype, params, done) {
  const noHub = (err) => setStatus(`no SAMP hub answered (${err}): start TOPCAT or Aladin, which run one, and try again`, true);
  sampConnector().runWithConnection((connection) => {
    connection.notifyAll([new samp.Message(mtype, params)],
      (ids) => setStatus(`${done} (${ids.length} SAMP client${ids.length === 1 ? "" : "s"})`),
      (err) => setStatus(`the SAMP hub refused the message: ${err}`, true));
  }, noHub);
}

$("samp-send").addEventListener("click", () => {
  if (!shown.query) return;
  const url = new URL(`/api/results.vot?${shown.query}`, location.href).href;
  const name = `radioalign: ${describe(shown.query, shown.results)}`;
  sampNotify("table.load.votable", { url, "table-id": url, name }, `sent ${shown.results.length} results as a VOTable`);
});

// -- labelling --------------------------------------------------------------

let labelMode = false;
let labelling = { classes: [], counts: {}, total: 0, probe: { version: 0, state: "idle" } };
const undoStack = [];  // {id, name, previous}: the labels given on this page, last first to undo
let suggestions = false;  // whether the grid shows a batch of suggestions (a full batch retrains the probe)

async function setMode(on, rerender = true) {
  labelMode = on;
  $("mode-label").setAttribute("aria-pressed", String(on));
  $("mode-search").setAttribute("aria-pressed", String(!on));
  $("labelling").hidden = !on;
  const params = new URLSearchParams(location.search);
  if (on) params.set("mode", "label"); else params.delete("mode");
  history.replaceState(history.state, "", `${location.pathname}${params.toString() ? `?${params}` : ""}`);
  if (on) await refreshLabelling();
  if (rerender) $("results").replaceChildren(...shown.results.map(card));
}

$("mode-search").addEventListener("click", () => setMode(false));
$("mode-label").addEventListener("click", () => setMode(true));

async function refreshLabelling() {
  try {
    const { body } = await fetchJSON("/api/labelling");
    showLabelling(body);
    if (body.probe.state === "training") pollProbe(body.probe.version);
  } catch (err) {
    setStatus(`the labelling state cannot be read: ${err.message}`, true);
  }
}

function showLabelling(state) {
  const known = new Set(labelling.classes);
  labelling = { ...state, classes: [...state.classes, ...labelling.classes.filter((c) => !state.classes.includes(c))] };
  const counts = Object.entries(state.counts).map(([c, n]) => `${c}: ${n}`).join(", ");
  $("label-count").textContent = `${state.total} source${state.total === 1 ? "" : "s"} labelled${counts ? ` (${counts})` : ""}`;
  $("label-count").dataset.total = String(state.total);
  $("class-keys").textContent = `keys on a result: ${labelling.classes.map((c, i) => `${i + 1} ${c}`).join(" \u00b7 ")}`;
  showProbe(state.probe);
  if (labelling.classes.some((c) => !known.has(c))) {  // a new class: every card gets its button
    for (const node of document.querySelectorAll(".card")) labelControls(node, node.result);
  }
}

function showProbe(probe) {
  const f1 = probe.cv_macro_f1 === null || probe.cv_macro_f1 === undefined ? "n/a" : fmt(probe.cv_macro_f1, 2);
  const coverage = probe.coverage === null || probe.coverage === undefined ? "n/a" : fmt(probe.coverage, 2);
  let text = "probe: not trained yet (label a batch of suggestions, or press T)";
  if (probe.state === "failed") text = `probe: ${probe.message}`;
  else if (probe.version > 0 && probe.model === "probe") {
    text = `probe: cross-validated macro F1 ${f1}, coverage ${coverage} at \u03b1 ${probe.alpha} `
      + `(mean set size ${fmt(probe.mean_set_size, 2)}), trained on ${probe.labels} labels`;
  } else if (probe.version > 0) text = `probe: calibrated zero-shot for now (${probe.fallback || probe.message})`;
  if (probe.state === "training") text = `probe: retraining\u2026 ${probe.version > 0 ? `(before: ${text.replace(/^probe: /, "")})` : ""}`;
  $("probe-status").textContent = text;
  $("probe-status").dataset.version = String(probe.version);
  $("probe-status").dataset.state = probe.state;
}

let polling = null;

// Ask the server for the probe's status until the run after `version` has finished.
function pollProbe(version) {
  if (polling) clearTimeout(polling);
  const tick = async () => {
    try {
      const { body } = await fetchJSON("/api/probe");
      showProbe(body);
      if (body.state === "training" || body.version <= version) { polling = setTimeout(tick, 400); return; }
      polling = null;
      if (suggestions && allLabelled()) suggest();  // the next batch, ranked by the new probe
    } catch (err) {
      polling = null;
      setStatus(`the probe's status cannot be read: ${err.message}`, true);
    }
  };
  polling = setTimeout(tick, 200);
}

function allLabelled() {
  const cards = [...document.querySelectorAll(".card")];
  return cards.length > 0 && cards.every((node) => node.dataset.given);
}

// The class buttons and the given label of a card (the labelling mode only).
function labelControls(node, result) {
  node.result = result;
  const group = node.querySelector(".classify");
  group.hidden = !labelMode;
  group.setAttribute("aria-label", `label ${result.name}`);
  group.replaceChildren(...labelling.classes.map((cls, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = i < 9 ? `${i + 1} ${cls}` : cls;
    button.dataset.class = cls;
    button.setAttribute("aria-label", `label ${result.name} as ${cls}${i < 9 ? ` (key ${i + 1})` : ""}`);
    button.addEventListener("click", () => giveLabel(node, result, cls, false));
    return button;
  }));
  markGiven(node, result, node.dataset.given || result.user_label || null);
}

function markGiven(node, result, cls) {
  if (cls) node.dataset.given = cls; else delete node.dataset.given;
  node.classList.toggle("done", Boolean(cls));
  const given = node.querySelector(".given");
  given.hidden = !cls;
  given.textContent = cls ? `labelled ${cls}` : "";
  for (const b of node.querySelectorAll(".classify button")) b.setAttribute("aria-pressed", String(b.dataset.class === cls));
  node.setAttribute("aria-label", `${node.getAttribute("aria-label").replace(/, labelled .*$/, "")}${cls ? `, labelled ${cls}` : ""}`);
}

async function postLabels(labels, train) {
  const { body } = await fetchJSON("/api/labels", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ labels, train }),
  });
  showLabelling(body);
  if (train) pollProbe(body.probe.version);
  return body;
}

async function giveLabel(node, result, cls, moveOn) {
  const previous = node.dataset.given || null;
  if (previous === cls) return;
  markGiven(node, result, cls);
  const train = suggestions && allLabelled();  // the batch is done: retrain
  try {
    await postLabels({ [result.id]: cls }, train);
    undoStack.push({ id: result.id, name: result.name, previous });
    $("undo").disabled = false;
    setStatus(`labelled ${result.name} as ${cls}${train ? "; the probe retrains on this batch" : ""}`);
  } catch (err) {
    markGiven(node, result, previous);
    setStatus(`${result.name} was not labelled: ${err.message}`, true);
    return;
  }
  if (moveOn && node.nextElementSibling) node.nextElementSibling.focus();
}

async function undo() {
  const last = undoStack.pop();
  $("undo").disabled = undoStack.length === 0;
  if (!last) return;
  try {
    await postLabels({ [last.id]: last.previous }, false);
  } catch (err) {
    undoStack.push(last);
    setStatus(`the last label could not be undone: ${err.message}`, true);
    return;
  }
  const node = [...document.querySelectorAll(".card")].find((n) => n.dataset.id === last.id);
  if (node) markGiven(node, node.result, last.previous);
  setStatus(last.previous ? `${last.name} is ${last.previous} again` : `${last.name} is unlabelled again`);
}

async function train() {
  try {
    const { body } = await fetchJSON("/api/probe", { method: "POST" });
    showProbe(body);
    pollProbe(body.version);
  } catch (err) {
    setStatus(`the probe cannot be retrained: ${err.message}`, true);
  }
}

// A batch of suggestions: the sources the probe is least sure of (or, before any label,
// those closest to the description typed in the search box).
async function suggest() {
  const mine = ++generation;
  const params = new URLSearchParams({ n: $("k").value || "12" });
  const text = $("query").value.trim();
  if (text && labelling.total === 0) params.set("text", text);
  setStatus("finding the sources worth labelling\u2026");
  try {
    const { body } = await fetchJSON(`/api/suggest?${params}`);
    if (mine !== generation) return;
    shown = { query: null, results: body };
    suggestions = true;
    $("results").replaceChildren(...body.map(card));
    setExports(null);
    const by = body.length ? body[0].by : null;
    setStatus(`${body.length} sources to label${by === "query" ? ` (closest to \u201c${text}\u201d)` : by ? ` (by ${by} uncertainty)` : ""}`);
    if (body.length) $("results").firstElementChild.focus();
  } catch (err) {
    if (mine === generation) setStatus(err.message, true);
  }
}

$("suggest").addEventListener("click", suggest);
$("undo").addEventListener("click", undo);
$("train").addEventListener("click", train);
$("add-class").addEventListener("click", () => {
  const cls = $("new-class").value.trim();
  if (!cls || cls.includes("|")) { setStatus("a class is a name without '|'", true); return; }
  if (!labelling.classes.includes(cls)) showLabelling({ ...labelling, classes: [...labelling.classes, cls] });
  $("new-class").value = "";
});
document.addEventListener("keydown", (event) => {
  if (!labelMode || event.ctrlKey || event.metaKey || event.altKey || event.target.closest("input, select, textarea")) return;
  if (event.key === "u" || event.key === "U") { event.preventDefault(); undo(); }
  else if (event.key === "t" || event.key === "T") { event.preventDefault(); train(); }
});

// -- start -----------------------------------------------------------------

async function start() {
  $("scs-url").textContent = `${location.origin}/scs?`;
  setExports(null);
  try {
    const { body: info } = await fetchJSON("/api/info");
    const model = info.adapter ? `${info.model} + ${info.adapter}` : info.model;
    hips = info.hips || hips;
    $("info").textContent = `${info.sources} sources \u00b7 ${model} \u00b7 ${info.indexed ? "IVF-PQ index" : "exact search"} \u00b7 labels: ${info.prompts}`;
  } catch (err) {
    $("info").textContent = `the store cannot be read: ${err.message}`;
  }
  const params = new URLSearchParams(location.search);
  if (params.get("mode") === "label") await setMode(true, false);
  const query = queryOf(params);  // a shared link reruns its query
  fillForm(query);
  if (query) search(query, { what: history.state && history.state.what });  // kept across a reload
}

start();
