// The search page's logic: plain JavaScript, no library, no request outside this server.
"use strict";

const $ = (id) => document.getElementById(id);

function fmt(value, digits) {
  return value === null || value === undefined ? "\u2014" : Number(value).toFixed(digits);
}

function cone() {
  const [ra, dec, radius] = ["ra", "dec", "radius"].map((id) => $(id).value.trim());
  return ra && dec && radius ? { ra, dec, radius } : {};
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function card(result) {
  const node = $("card-template").content.firstElementChild.cloneNode(true);
  node.dataset.id = result.id;
  node.querySelector(".thumb").src = `/api/thumb/${encodeURIComponent(result.id)}`;
  node.querySelector(".thumb").alt = result.name;
  node.querySelector(".name").textContent = result.name;
  node.querySelector(".name").title = result.source;
  node.querySelector(".coords").textContent = `RA ${fmt(result.ra, 4)}\u00b0  Dec ${fmt(result.dec, 4)}\u00b0`;
  node.querySelector(".score").textContent = `score ${fmt(result.score, 3)}`;
  node.querySelector(".label").textContent = result.label ? `${result.label} (p ${fmt(result.probability, 2)})` : "unlabelled";
  node.querySelector(".more").addEventListener("click", () => run({ like: result.id }, `sources like ${result.name}`));
  return node;
}

function show(results, what) {
  $("results").replaceChildren(...results.map(card));
  setStatus(`${results.length} result${results.length === 1 ? "" : "s"}: ${what}`);
}

async function fetchJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

// One query at a time: a slower, older answer never replaces a newer one.
let generation = 0;

async function run(params, what) {
  const mine = ++generation;
  setStatus(`searching ${what}\u2026`);
  try {
    let results;
    if (params.file) {
      const form = new FormData();
      form.append("image", params.file);
      form.append("k", $("k").value || "12");
      for (const [key, value] of Object.entries(cone())) form.append(key, value);
      results = await fetchJSON("/api/search", { method: "POST", body: form });
    } else {
      const query = new URLSearchParams({ ...params, k: $("k").value || "12", ...cone() });
      results = await fetchJSON(`/api/search?${query}`);
      history.replaceState(null, "", `?${new URLSearchParams(params)}`);
    }
    if (mine === generation) show(results, what);
  } catch (err) {
    if (mine === generation) setStatus(err.message, true);
  }
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("image").files[0];
  const text = $("query").value.trim();
  if (file) run({ file }, `images like ${file.name}`);
  else if (text) run({ text }, `\u201c${text}\u201d`);
  else setStatus("type a description or choose an image", true);
});

$("image").addEventListener("change", () => { if ($("image").files[0]) $("query").value = ""; });
$("query").addEventListener("input", () => { if ($("query").value) $("image").value = ""; });

async function start() {
  try {
    const info = await fetchJSON("/api/info");
    const model = info.adapter ? `${info.model} + ${info.adapter}` : info.model;
    $("info").textContent = `${info.sources} sources \u00b7 ${model} \u00b7 ${info.indexed ? "IVF-PQ index" : "exact search"} \u00b7 labels: ${info.prompts}`;
  } catch (err) {
    $("info").textContent = `the store cannot be read: ${err.message}`;
  }
  const params = new URLSearchParams(location.search);  // a shared link reruns its query
  if (params.get("text")) { $("query").value = params.get("text"); run({ text: params.get("text") }, `\u201c${params.get("text")}\u201d`); }
  else if (params.get("like")) run({ like: params.get("like") }, `sources like ${params.get("like")}`);
}

start();
