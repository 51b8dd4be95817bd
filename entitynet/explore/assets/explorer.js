// EntityNet explorer: the pages of a static site. Data files are scripts that call
// EXPLORER.data(name, object), so the site works opened from disk (no fetch of local files).
// Every text from the data (alt texts, URLs, names) goes into the page as text, never as HTML.
"use strict";

const EXPLORER = (() => {
  const waiting = {};
  const cache = {};
  function data(name, obj) {
    cache[name] = obj;
    (waiting[name] || []).forEach((resolve) => resolve(obj));
    delete waiting[name];
  }
  function load(name) {
    if (name in cache) return Promise.resolve(cache[name]);
    return new Promise((resolve, reject) => {
      const first = !(name in waiting);
      (waiting[name] = waiting[name] || []).push(resolve);
      if (!first) return;
      const s = document.createElement("script");
      s.src = name;
      s.onerror = () => {
        delete waiting[name]; // a later load tries again
        s.remove();
        reject(new Error("cannot load " + name + ": is the site complete?"));
      };
      document.head.appendChild(s);
    });
  }
  return { data, load };
})();

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "href") { if (safeHref(v)) node.setAttribute("href", v); }
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return node;
}

// links go only to the web (http, https) or to the site's own pages
function safeHref(url) {
  return /^https?:\/\//i.test(url) || /^(index|entity|eval)\.html(\?[^:]*)?$/.test(url);
}

function link(url, text) {
  return safeHref(url) ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, text || url) : text || url;
}

function fmt(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%"; }
function sum(obj) { return Object.values(obj || {}).reduce((a, b) => a + b, 0); }
function param(name) { return new URLSearchParams(location.search).get(name); }
function fail(err) {
  document.body.appendChild(el("p", { class: "removed", id: "error" }, String(err && err.message ? err.message : err)));
}

let KEPT_WHY = []; // the link decisions that keep a link (entitynet.links.KEEP), from the index
let NOT_FETCHED = []; // outcomes of candidates never asked for (entitynet.harvest.NOT_FETCHED)
function linksKept(row) { return KEPT_WHY.reduce((a, w) => a + (row.links[w] || 0), 0); }
// candidates fetched and not written: every outcome but written, duplicate and the never-fetched ones
function failed(row) {
  const skip = ["written", "duplicate", "unknown", ...NOT_FETCHED];
  return Object.entries(row.outcomes).reduce((a, [o, n]) => a + (skip.includes(o) ? 0 : n), 0);
}
function words(s) { return s.replace(/_/g, " "); }

// ------------------------------------------------------------------ index

function indexPage() {
  Promise.all([EXPLORER.load("data/index.js"), EXPLORER.load("data/evals.js")]).then(([index, evals]) => {
    const s = index.summary;
    KEPT_WHY = s.kept_links;
    NOT_FETCHED = s.not_fetched || [];
    const h = s.harvest || {};
    const parts = [
      `${s.kind === "curated" ? "curated dataset" : "harvest"} ${s.dir}`,
      `${fmt(index.entities.length)} entities`,
      `harvest: ${fmt(h.candidates)} candidate URLs, ${fmt(h.records)} images written`,
    ];
    if (s.curation) parts.push(`curation: ${fmt(sum(s.curation.kept))} kept, ${fmt(sum(s.curation.removed))} removed`);
    const unimaged = index.entities.filter((r) => r.no_images).length;
    if (unimaged) parts.push(`${fmt(unimaged)} entities without images`);
    const leftOut = index.left_out || [];
    if (leftOut.length) parts.push(`${fmt(leftOut.length)} entities left out as not visual`);
    document.getElementById("summary").textContent = parts.join(" · ");
    if (leftOut.length) {
      document.getElementById("left-out").hidden = false;
      const body = document.querySelector("#left-out-table tbody");
      for (const r of leftOut) {
        body.appendChild(el("tr", { "data-id": r.id },
          el("td", {}, r.label, el("div", { class: "muted" }, r.id + (r.description ? " · " + r.description : ""))),
          el("td", {}, r.type), el("td", {}, r.by), el("td", {}, r.reason)));
      }
    }
    if (evals.length) {
      document.getElementById("evaluations").hidden = false;
      const ul = document.getElementById("eval-list");
      for (const e of evals) {
        const zs = e.zero_shot;
        ul.appendChild(el("li", {}, el("a", { href: "eval.html?set=" + encodeURIComponent(e.slug), class: "eval-link" }, e.name),
          ` — step ${fmt(e.step)}, ${fmt(e.images)} images`, zs ? `, zero-shot top-1 ${pct(zs.top1)}, top-5 ${pct(zs.top5)}` : ""));
      }
    }
    const rows = index.entities;
    for (const r of rows) r.haystack = [r.label, r.id, r.type, r.lineage.join(" "), r.description, r.no_images ? "no images " + r.no_images : ""].join(" ").toLowerCase();
    const search = document.getElementById("search");
    const sort = document.getElementById("sort");
    const more = document.getElementById("more");
    let limit = 500;
    const keys = {
      images: (a, b) => b.images - a.images,
      kept: (a, b) => b.kept - a.kept,
      removed: (a, b) => sum(b.removed) - sum(a.removed),
      failed: (a, b) => failed(b) - failed(a),
      label: (a, b) => a.label.localeCompare(b.label),
      type: (a, b) => a.type.localeCompare(b.type),
      lineage: (a, b) => [...a.lineage].reverse().join("/").localeCompare([...b.lineage].reverse().join("/")),
      noimages: (a, b) => (b.no_images ? 1 : 0) - (a.no_images ? 1 : 0),
    };
    function render() {
      const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      const found = rows.filter((r) => words.every((w) => r.haystack.includes(w)));
      found.sort((a, b) => keys[sort.value](a, b) || a.label.localeCompare(b.label));
      const tbody = document.querySelector("#entities tbody");
      tbody.textContent = "";
      for (const r of found.slice(0, limit)) {
        const entries = r.entries ? `${fmt(r.entries[0])} → ${fmt(r.entries[1])}` : "–";
        tbody.appendChild(el("tr", { "data-id": r.id, class: r.no_images ? "no-images" : null },
          el("td", {}, el("a", { href: "entity.html?e=" + encodeURIComponent(r.slug), class: "entity-link" }, r.label), " ", el("span", { class: "muted" }, r.id),
            r.no_images ? el("div", { class: "no-images-why" }, "no images: " + r.no_images) : null),
          el("td", {}, r.type), el("td", { class: "muted" }, r.lineage.join(" › ")),
          el("td", { class: "n images" }, fmt(r.images)), el("td", { class: "n kept" }, s.kind === "curated" ? fmt(r.kept) : "–"),
          el("td", { class: "n removed" }, s.kind === "curated" ? fmt(sum(r.removed)) : "–"),
          el("td", { class: "n entries" }, entries),
          el("td", { class: "n" }, `${fmt(linksKept(r))} / ${fmt(sum(r.links) - linksKept(r))}`),
          el("td", { class: "n" }, `${fmt(r.candidates)} (${fmt(failed(r))})`)));
      }
      document.getElementById("shown").textContent = `${fmt(Math.min(limit, found.length))} of ${fmt(found.length)} matching, ${fmt(rows.length)} entities`;
      more.hidden = found.length <= limit;
    }
    search.addEventListener("input", () => { limit = 500; render(); });
    sort.addEventListener("change", render);
    more.addEventListener("click", () => { limit += 500; render(); });
    render();
    document.body.dataset.ready = "1";
  }).catch(fail);
}

// ------------------------------------------------------------------ entity

function entityPage() {
  const wanted = param("e");
  EXPLORER.load("data/index.js").then((index) => {
    const s = index.summary;
    KEPT_WHY = s.kept_links;
    NOT_FETCHED = s.not_fetched || [];
    const row = index.entities.find((r) => r.slug === wanted);
    if (!row) throw new Error(`no entity ${wanted} in this site`);
    const labels = Object.fromEntries(index.entities.map((r) => [r.id, r.label]));
    document.title = `${row.label} · EntityNet explorer`;
    const title = document.getElementById("title");
    title.textContent = "";
    title.append(row.label, " ", el("span", { class: "muted" }, row.id), row.rank ? el("span", { class: "muted" }, ` (${row.rank})`) : "");
    document.getElementById("lineage").textContent = [row.type, row.lineage.join(" › ")].filter(Boolean).join(" · ");
    document.getElementById("description").textContent = row.description;
    if (row.no_images) {
      const none = document.getElementById("no-images");
      none.textContent = "No images: " + row.no_images;
      none.hidden = false;
    }
    const curated = s.kind === "curated";
    const stats = [["images harvested", row.images, "stat-images"]];
    if (curated) {
      stats.push(["kept by curation", row.kept, "stat-kept"]);
      for (const [reason, n] of Object.entries(row.removed)) stats.push([`removed: ${words(reason)}`, n, "stat-removed-" + reason.replace(/[^a-z_]/g, "_")]);
      stats.push(["curated records linked (merged copies included)", row.after, "stat-after"]);
      if (row.entries) stats.push(["balancing entries before → after", `${fmt(row.entries[0])} → ${fmt(row.entries[1])}`, "stat-entries"]);
    }
    stats.push(["candidate URLs that named it", row.candidates, "stat-candidates"]);
    const tb = document.querySelector("#stats tbody");
    for (const [name, n, id] of stats) tb.appendChild(el("tr", {}, el("td", {}, name), el("td", { class: "n", id }, typeof n === "number" ? fmt(n) : n)));
    const lb = document.querySelector("#links tbody");
    for (const [why, n] of Object.entries(row.links)) lb.appendChild(el("tr", {}, el("td", {}, `${KEPT_WHY.includes(why) ? "kept" : "dropped"}: ${words(why)}`), el("td", { class: "n" }, fmt(n))));
    const ob = document.querySelector("#outcomes tbody");
    for (const [o, n] of Object.entries(row.outcomes)) ob.appendChild(el("tr", { "data-outcome": o }, el("td", {}, words(o)), el("td", { class: "n" }, fmt(n))));
    if (!curated) {
      document.getElementById("kept-title").textContent = "Harvested images";
      document.getElementById("removed").hidden = true;
    }
    for (const status of ["kept", "removed"]) imagePages(row, status, s.thumb_size, labels);
    if (s.embeddings && row.map) {
      tb.appendChild(el("tr", {}, el("td", {}, "images with an embedding"), el("td", { class: "n", id: "stat-embedded" }, fmt(row.embedded))));
      return EXPLORER.load(`data/e/${row.slug}/map.js`).then((m) => entityMap(m, row, s)).then(() => { document.body.dataset.ready = "1"; });
    }
    document.body.dataset.ready = "1";
  }).catch(fail);
}

// An entity's images placed by the first two principal components of their embeddings: each a
// thumbnail framed by its status; a click shows its card when it is on the page shown.
function entityMap(m, row, s) {
  const W = 960, H = 600, T = 40, PAD = 4;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  for (const [key, x, y, status] of m.points) {
    if (!/^[A-Za-z0-9_-]+$/.test(key)) continue; // a key names a thumbnail file: nothing else
    const g = document.createElementNS(NS, "g");
    g.setAttribute("class", "pt " + (status === "removed" ? "removed" : "kept"));
    g.setAttribute("data-key", key);
    const px = PAD + x * (W - T - 2 * PAD), py = PAD + y * (H - T - 2 * PAD);
    g.setAttribute("transform", `translate(${px.toFixed(1)},${py.toFixed(1)})`);
    const img = document.createElementNS(NS, "image");
    img.setAttribute("href", thumbOf(key, s.thumb_size));
    img.setAttribute("width", T);
    img.setAttribute("height", T);
    img.setAttribute("preserveAspectRatio", "xMidYMid slice");
    const frame = document.createElementNS(NS, "rect");
    frame.setAttribute("width", T);
    frame.setAttribute("height", T);
    const title = document.createElementNS(NS, "title");
    title.textContent = `${key} (${status})`;
    g.append(img, frame, title);
    g.addEventListener("click", () => {
      const c = document.querySelector(`.card[data-key="${key}"]`);
      if (!c) return;
      c.scrollIntoView({ block: "center" });
      c.classList.add("flash");
      setTimeout(() => c.classList.remove("flash"), 1500);
    });
    svg.appendChild(g);
  }
  const section = document.getElementById("map");
  section.appendChild(svg);
  const shown = m.points.length < row.embedded ? `${fmt(m.points.length)} of its ${fmt(row.embedded)} embedded images (a fixed sample)` : `its ${fmt(m.points.length)} embedded images`;
  document.getElementById("map-info").textContent = `${shown}, placed by the first two principal components of their image embeddings ` +
    `(${pct(m.explained[0])} and ${pct(m.explained[1])} of the variance); near is alike. Frames: green kept, red removed. Click an image to see its card when it is on the page shown.`;
  section.hidden = false;
}

function imagePages(row, status, thumbSize, labels) {
  const section = document.getElementById(status);
  const pages = row.pages[status];
  const pager = section.querySelector(".pager");
  const grid = section.querySelector(".grid");
  if (!pages) { grid.appendChild(el("p", { class: "muted" }, "none")); return; }
  let page = 0;
  const info = el("span", { class: "page-info" });
  const prev = el("button", { class: "prev" }, "← previous");
  const next = el("button", { class: "next" }, "next →");
  pager.append(prev, info, next);
  function show() {
    const name = `data/e/${row.slug}/${status}-${page}.js`;
    EXPLORER.load(name).then((data) => {
      grid.textContent = "";
      for (const r of data.rows) grid.appendChild(card(r, thumbSize, labels));
      info.textContent = `page ${page + 1} of ${pages} (${fmt(data.rows.length)} images)`;
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
      section.dataset.page = String(page);
    }).catch(fail);
  }
  prev.addEventListener("click", () => { if (page > 0) { page--; show(); } });
  next.addEventListener("click", () => { if (page < pages - 1) { page++; show(); } });
  show();
}

function thumbOf(key, size) { return `thumbs-${size}/${key.slice(0, 2)}/${key}.jpg`; }

// the nearest images by their embeddings, with the cosine score; one outside the site shows its key
function neighbours(near, thumbSize) {
  return el("div", { class: "neighbours", title: "nearest images (cosine of their embeddings)" }, "nearest:", near.map(([key, score]) => {
    const fig = el("figure", { "data-key": key }, el("figcaption", {}, score.toFixed(3)));
    if (/^[A-Za-z0-9_-]+$/.test(key)) {
      const img = el("img", { src: thumbOf(key, thumbSize), alt: key, title: `${key} · ${score.toFixed(4)}`, loading: "lazy" });
      img.addEventListener("error", () => img.replaceWith(el("span", { class: "muted" }, key.slice(0, 8))));
      fig.prepend(img);
    }
    return fig;
  }));
}

function card(r, thumbSize, labels) {
  const c = el("div", { class: "card", "data-key": r.key });
  c.appendChild(el("img", { class: "thumb", src: r.thumb, alt: r.texts[0] || r.key, loading: "lazy", width: null }));
  for (const rm of r.removed) {
    const why = el("div", { class: "removed" }, "removed: " + words(rm.reason));
    if (rm.reason === "near_duplicate") {
      why.append(" of ", el("img", { class: "thumb rep", src: thumbOf(rm.detail, thumbSize), alt: rm.detail, title: rm.detail, style: "max-height:60px;display:inline" }));
    } else if (rm.reason.startsWith("contaminated:")) {
      why.append(el("div", { class: "muted" }, "near evaluation image " + rm.detail));
    } else if (rm.detail) {
      why.append(el("div", { class: "muted" }, "entries: " + rm.detail.split(",").map((e) => labels[e] || e).join(", ")));
    }
    c.appendChild(why);
  }
  if (r.neighbours) c.appendChild(neighbours(r.neighbours, thumbSize));
  if (r.texts.length) c.appendChild(el("ul", { class: "texts" }, r.texts.map((t) => el("li", {}, t)), r.more_texts ? el("li", { class: "muted" }, `… ${r.more_texts} more`) : null));
  c.appendChild(el("div", {}, link(r.url, r.url.length > 70 ? r.url.slice(0, 67) + "…" : r.url), r.urls > 1 ? el("span", { class: "muted" }, ` (+${r.urls - 1} URLs)`) : ""));
  if (r.page) c.appendChild(el("div", {}, "page: ", link(r.page, r.page.length > 60 ? r.page.slice(0, 57) + "…" : r.page)));
  c.appendChild(el("div", { class: "license" }, `${r.size[0]}×${r.size[1]} · `, r.license_url ? link(r.license_url, r.license) : r.license, r.attribution ? ` · ${r.attribution}` : "", r.sources.length ? ` · ${r.sources.join(", ")}` : ""));
  if (r.queries.length) c.appendChild(el("div", {}, "found by: ", r.queries.map(([q, rank]) => el("span", { class: "tag" }, rank >= 0 ? `${q} #${rank + 1}` : q))));
  if (r.links.length) {
    c.appendChild(el("div", {}, "links: ", r.links.map((x) => el("span", {
      class: "tag" + (x.kept ? "" : " dropped"),
      title: `${x.why}; queries: ${x.kinds.join(", ") || "none"}; rank ${x.rank}; alt text names it: ${x.alt_text}; by identifier: ${x.identifier}`,
    }, `${labels[x.entity] || x.entity} (${words(x.why)})`))));
  }
  return c;
}

// ------------------------------------------------------------------ evaluation

function evalPage() {
  const wanted = param("set");
  // only an evaluation this site lists: the name becomes a script path
  EXPLORER.load("data/evals.js").then((evals) => {
    const known = evals.find((e) => e.slug === wanted);
    if (!known) throw new Error(`no evaluation ${wanted} in this site`);
    return EXPLORER.load(`data/eval/${known.slug}.js`);
  }).then((ev) => {
    document.getElementById("title").textContent = ev.name;
    const zs = ev.zero_shot;
    document.getElementById("scores").textContent = [
      ev.workdir, `step ${fmt(ev.step)}`, `${fmt(ev.images)} images`,
      zs ? `zero-shot top-1 ${pct(zs.top1)}, top-5 ${pct(zs.top5)}, macro ${pct(zs.macro)}` : "no zero-shot classes",
      ev.retrieval ? `retrieval over ${fmt(ev.retrieval.texts)} texts: image→text R@1 ${pct(ev.retrieval.image_to_text["R@1"])}, text→image R@1 ${pct(ev.retrieval.text_to_image["R@1"])}` : "",
    ].filter(Boolean).join(" · ");
    const pairs = document.getElementById("confused");
    for (const p of ev.confused) {
      pairs.appendChild(el("div", { class: "pair" },
        el("div", {}, el("b", {}, p.a), " taken for ", el("b", {}, p.b), ` × ${p.count}`),
        p.a_img ? el("img", { src: p.a_img, alt: p.a, title: p.a }) : el("span", { class: "muted" }, "(no image kept)"),
        p.b_img ? el("img", { src: p.b_img, alt: p.b, title: p.b }) : el("span", { class: "muted" }, "(no image kept)")));
    }
    if (!ev.confused.length) pairs.appendChild(el("p", { class: "muted" }, "none"));
    const search = document.getElementById("class-search");
    const sort = document.getElementById("class-sort");
    const acc = (c) => (c.accuracy === null ? 2 : c.accuracy);
    const keys = {
      accuracy: (a, b) => acc(a) - acc(b),
      name: (a, b) => a.name.localeCompare(b.name),
      images: (a, b) => (b.images || 0) - (a.images || 0),
    };
    function render() {
      const box = document.getElementById("classes");
      box.textContent = "";
      const w = search.value.toLowerCase();
      const shown = ev.classes.filter((c) => c.name.toLowerCase().includes(w)).sort((a, b) => keys[sort.value](a, b) || a.name.localeCompare(b.name));
      for (const c of shown.slice(0, 200)) {
        box.appendChild(el("div", { class: "class", "data-class": c.name },
          el("h3", {}, c.name, " ", el("span", { class: "muted" }, `${pct(c.accuracy)} right${c.images === null ? "" : ` of ${fmt(c.images)} images`}${c.entity ? " · " + c.entity : ""}`)),
          el("div", { class: "grid" }, c.examples.map((x) => el("div", { class: "card " + (x.right ? "right" : "wrong") },
            el("img", { class: "thumb", src: x.img, alt: c.name, loading: "lazy" }),
            el("ol", { class: "top5" }, x.top5.map(([name, score]) => el("li", { class: name === c.name ? "truth" : "" }, `${name} (${score.toFixed(3)})`))))))));
      }
    }
    search.addEventListener("input", render);
    sort.addEventListener("change", render);
    render();
    document.body.dataset.ready = "1";
  }).catch(fail);
}

({ index: indexPage, entity: entityPage, eval: evalPage })[document.body.dataset.page]();
