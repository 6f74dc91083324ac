// featurelens graph page: draws one attribution graph as SVG from /graph/<id>/data.json.
// Our own script, served from /static (no CDN, no network). Rows are layers (embeddings at
// the bottom, logits at the top), columns prompt positions. Text from the store is only
// ever set with textContent, never parsed as HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const root = document.getElementById("graph");
  if (!root) return;
  const card = document.getElementById("hovercard");
  const slider = document.getElementById("prune");
  const sliderValue = document.getElementById("prune-value");
  const pinnedList = document.getElementById("pinned-list");
  const form = document.getElementById("intervene");
  const resultBox = document.getElementById("intervene-result");
  const pinned = new Set(readPins());
  let data = null;
  let byId = new Map();
  let positions = new Map();

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function readPins() {
    const match = /(?:^|[#&])pinned=([^&]*)/.exec(window.location.hash);
    return match && match[1] ? decodeURIComponent(match[1]).split(",").filter(Boolean) : [];
  }

  function writePins() {
    const ids = Array.from(pinned);
    const hash = ids.length ? "#pinned=" + encodeURIComponent(ids.join(",")) : "";
    history.replaceState(null, "", window.location.pathname + window.location.search + hash);
  }

  function fmt(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return "-";
    return Number(x).toPrecision(digits || 3);
  }

  // The nodes drawn at slider value t. At the graph's own node threshold: exactly the nodes
  // its pruning kept. Below it: the kept feature and error nodes holding t / threshold of the
  // kept nodes' influence, largest first. Above it: every kept node, plus the pruned ones
  // holding (t - threshold) / (1 - threshold) of the pruned nodes' influence (all at 1).
  // Embeddings, logits and pinned nodes are always drawn.
  function prefix(nodes, fraction) {
    const ranked = nodes.slice().sort((a, b) => (b.influence || 0) - (a.influence || 0));
    const total = ranked.reduce((s, n) => s + Math.max(0, n.influence || 0), 0);
    const out = [];
    let sum = 0;
    for (const n of ranked) {
      if (fraction < 1 && total > 0 && sum >= fraction * total - 1e-12) break;
      if (fraction <= 0) break;
      out.push(n.id);
      sum += Math.max(0, n.influence || 0);
    }
    return out;
  }

  function visibleIds(t) {
    const threshold = data.node_threshold || 0.8;
    const prunable = data.nodes.filter((n) => n.kind === "feature" || n.kind === "error");
    const kept = prunable.filter((n) => n.kept), rest = prunable.filter((n) => !n.kept);
    const shown = new Set(data.nodes.filter((n) => n.kind === "embedding" || n.kind === "logit").map((n) => n.id));
    if (t <= threshold + 1e-9) {
      for (const id of prefix(kept, Math.abs(t - threshold) < 1e-9 ? 1 : t / threshold)) shown.add(id);
    } else {
      for (const n of kept) shown.add(n.id);
      for (const id of prefix(rest, threshold >= 1 ? 1 : (t - threshold) / (1 - threshold))) shown.add(id);
    }
    for (const id of pinned) if (byId.has(id)) shown.add(id);
    return shown;
  }

  // Columns are as wide as their busiest row needs (a prompt's nodes crowd its last
  // positions), stretched to fill the box when they need less.
  function layout(shown, width) {
    const nPos = data.prompt_tokens.length;
    const rows = data.n_layers + 2; // embeddings, layers 0..n-1, logits
    const rowH = 70, top = 30, left = 10, minW = 36;
    const cells = new Map();
    for (const n of data.nodes) {
      if (!shown.has(n.id)) continue;
      const row = n.kind === "embedding" ? 0 : n.kind === "logit" ? rows - 1 : n.layer + 1;
      const key = row + ":" + n.position;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(n);
    }
    const busiest = new Array(nPos).fill(0);
    for (const [key, group] of cells) {
      const pos = Number(key.split(":")[1]);
      busiest[pos] = Math.max(busiest[pos], group.length);
    }
    // as much room per node as fits the box, between 10 and 24 pixels
    const crowd = busiest.reduce((a, b) => a + b, 0) || 1;
    const perNode = Math.min(24, Math.max(10, (width - 2 * left - minW * nPos) / crowd));
    let widths = busiest.map((c) => minW + perNode * c);
    const need = widths.reduce((a, b) => a + b, 0), room = width - 2 * left;
    if (need < room) widths = widths.map((w) => w * room / need);
    const starts = [];
    widths.reduce((x, w) => { starts.push(x); return x + w; }, left);
    positions = new Map();
    for (const [key, group] of cells) {
      const [row, pos] = key.split(":").map(Number);
      group.sort((a, b) => (b.influence || 0) - (a.influence || 0) || (a.id < b.id ? -1 : 1));
      group.forEach((n, i) => {
        const x = starts[pos] + widths[pos] * (i + 1) / (group.length + 1);
        const y = top + (rows - 1 - row) * rowH;
        positions.set(n.id, { x, y });
      });
    }
    const total = widths.reduce((a, b) => a + b, 0);
    return { height: top * 2 + (rows - 1) * rowH + 30, width: left * 2 + total, widths, starts, rowH, rows, left, top };
  }

  function draw() {
    const threshold = Number(slider ? slider.value : root.dataset.threshold);
    if (sliderValue) sliderValue.textContent = threshold.toFixed(2);
    const shown = visibleIds(threshold);
    const geo = layout(shown, Math.max(root.clientWidth || 900, 600));
    const width = Math.max(root.clientWidth || 900, 600, geo.width);
    const svg = el("svg:svg", { class: "graph-svg", width: String(width), height: String(geo.height),
      viewBox: `0 0 ${width} ${geo.height}`, role: "img", "aria-label": "attribution graph" });
    // row labels and prompt tokens
    for (let row = 0; row < geo.rows; row++) {
      const y = geo.top + (geo.rows - 1 - row) * geo.rowH;
      const name = row === 0 ? "Emb" : row === geo.rows - 1 ? "Logit" : "L" + (row - 1);
      svg.appendChild(el("svg:text", { class: "row-label", x: "2", y: String(y - 12) }, name));
      svg.appendChild(el("svg:line", { class: "row-line", x1: "0", x2: String(width), y1: String(y), y2: String(y) }));
    }
    data.prompt_tokens.forEach((tok, pos) => {
      const label = el("svg:text", { class: "token-label", "text-anchor": "middle",
        x: String(geo.starts[pos] + geo.widths[pos] / 2), y: String(geo.height - 8) },
        tok.length > 8 ? tok.slice(0, 7) + "…" : tok);
      label.appendChild(el("svg:title", {}, `${pos}: ${tok}`));
      svg.appendChild(label);
    });
    // the graph's kept edges; above its threshold also those pruning removed
    const beyond = threshold > (data.node_threshold || 0.8) + 1e-9;
    const edges = data.edges.filter((e) => positions.has(e.source) && positions.has(e.target) && (e.kept || beyond));
    const maxW = edges.reduce((m, e) => Math.max(m, Math.abs(e.weight)), 0) || 1;
    const edgeGroup = el("svg:g", { class: "edges" });
    for (const e of edges) {
      const a = positions.get(e.source), b = positions.get(e.target);
      const touched = pinned.has(e.source) || pinned.has(e.target);
      const line = el("svg:line", { class: "edge " + (e.weight >= 0 ? "pos" : "neg") + (touched ? " touched" : ""),
        x1: a.x.toFixed(1), y1: a.y.toFixed(1), x2: b.x.toFixed(1), y2: b.y.toFixed(1),
        "stroke-width": (0.5 + 4 * Math.abs(e.weight) / maxW).toFixed(2),
        "data-source": e.source, "data-target": e.target, "data-weight": String(e.weight) });
      line.appendChild(el("svg:title", {}, `${e.source} → ${e.target}: ${fmt(e.weight)}`));
      edgeGroup.appendChild(line);
    }
    svg.appendChild(edgeGroup);
    const nodeGroup = el("svg:g", { class: "nodes" });
    for (const n of data.nodes) {
      const p = positions.get(n.id);
      if (!p) continue;
      const shape = n.kind === "feature" ? "svg:circle" : "svg:rect";
      const attrs = n.kind === "feature" ? { cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: "7" }
        : { x: (p.x - 6).toFixed(1), y: (p.y - 6).toFixed(1), width: "12", height: "12" };
      const node = el(shape, Object.assign(attrs, {
        class: `node ${n.kind}${pinned.has(n.id) ? " pinned" : ""}${n.kept ? "" : " pruned"}`,
        "data-id": n.id, tabindex: "0" }));
      node.addEventListener("mouseenter", (ev) => showCard(n, ev));
      node.addEventListener("mousemove", (ev) => moveCard(ev));
      node.addEventListener("mouseleave", () => { card.hidden = true; });
      node.addEventListener("click", (ev) => {
        if (ev.shiftKey) { togglePin(n.id); return; }
        if (n.href) window.location.href = n.href;
      });
      nodeGroup.appendChild(node);
    }
    svg.appendChild(nodeGroup);
    const first = !root.querySelector("svg");
    root.replaceChildren(svg);
    if (first) root.scrollLeft = root.scrollWidth; // the targets are at the prompt's end
    root.dataset.shown = String(positions.size);
    root.dataset.edges = String(edges.length);
  }

  function examplesBlock(examples) {
    const box = el("div", { class: "card-examples" });
    for (const ex of examples) {
      const line = el("div", { class: "card-example" });
      ex.tokens.forEach((tok, i) => {
        const a = ex.acts[i] || 0;
        const span = el("span", { class: "tok" + (a > 0 ? " on" : ""), "data-act": String(a) }, tok || "\u200b");
        if (a > 0) span.style.backgroundColor = `rgb(255, ${Math.round(255 - 120 * a)}, ${Math.round(255 - 255 * a)})`;
        line.appendChild(span);
      });
      box.appendChild(line);
    }
    return box;
  }

  function showCard(n, ev) {
    card.replaceChildren();
    const title = n.kind === "feature" ? `Feature ${n.feature} · layer ${n.layer}`
      : n.kind === "error" ? `Error · layer ${n.layer}` : n.kind === "embedding" ? "Embedding" : "Logit";
    card.appendChild(el("h3", {}, title));
    card.appendChild(el("p", { class: "card-label" }, n.label || (n.kind === "feature" ? "(no label yet)" : "")));
    if (n.label_source) card.appendChild(el("p", { class: "meta" },
      `${n.label_source}${n.label_score !== null ? " · score " + fmt(n.label_score, 2) : ""}`));
    card.appendChild(el("p", { class: "meta" },
      `token “${n.token || ""}” at ${n.position} · activation ${fmt(n.activation)} · influence ${fmt(n.influence)}`
      + (n.kept ? "" : " · pruned")));
    if (n.examples && n.examples.length) card.appendChild(examplesBlock(n.examples));
    card.hidden = false;
    moveCard(ev);
  }

  function moveCard(ev) {
    card.style.left = (ev.pageX + 14) + "px";
    card.style.top = (ev.pageY + 14) + "px";
  }

  function togglePin(id) {
    if (pinned.has(id)) pinned.delete(id); else pinned.add(id);
    writePins();
    renderPins();
    draw();
  }

  function renderPins() {
    if (!pinnedList) return;
    pinnedList.replaceChildren();
    if (!pinned.size) {
      pinnedList.appendChild(el("li", { class: "empty" }, "None yet: shift-click a node to pin it."));
      return;
    }
    for (const id of pinned) {
      const n = byId.get(id);
      const item = el("li", { "data-id": id });
      item.appendChild(el("code", {}, id));
      item.appendChild(document.createTextNode(" " + (n ? (n.label || n.kind) : "(not in this graph)") + " "));
      const button = el("button", { type: "button", class: "unpin" }, "unpin");
      button.addEventListener("click", () => togglePin(id));
      item.appendChild(button);
      pinnedList.appendChild(item);
    }
  }

  function intervene(ev) {
    ev.preventDefault();
    const mode = form.elements.mode.value;
    // feature nodes are ablated or steered; error nodes can only be ablated
    const editable = (n) => n.kind === "feature" || (n.kind === "error" && mode === "ablate");
    const ids = Array.from(pinned).filter((id) => byId.has(id) && editable(byId.get(id)));
    resultBox.replaceChildren();
    if (!ids.length) {
      resultBox.appendChild(el("p", { class: "error" },
        "Pin at least one feature node (or, to ablate, an error node) first: shift-click it."));
      return;
    }
    const params = new URLSearchParams();
    if (mode === "ablate") params.set("ablate", ids.join(","));
    else params.set("steer", ids.map((id) => `${id}=x${form.elements.factor.value}`).join(","));
    resultBox.appendChild(el("p", { class: "meta" }, "Running the model…"));
    fetch(`${data.intervene}?${params}`).then((r) => r.json().then((body) => ({ ok: r.ok, body })))
      .then(({ ok, body }) => showResult(ok, body))
      .catch((err) => showResult(false, { error: String(err) }));
  }

  function showResult(ok, body) {
    resultBox.replaceChildren();
    if (!ok) { resultBox.appendChild(el("p", { class: "error" }, body.error || "The intervention failed.")); return; }
    resultBox.appendChild(el("p", { class: "meta" }, "Edits: " + body.edits.join(", ")));
    const table = el("table", { class: "list intervention" });
    const head = el("tr");
    for (const h of ["token", "p before", "p after", "change", "logit before", "logit after"]) head.appendChild(el("th", {}, h));
    table.appendChild(el("thead")).appendChild(head);
    const tbody = el("tbody");
    for (const row of body.targets.concat(body.changed)) {
      const tr = el("tr", { class: row.target ? "target" : "changed" });
      tr.appendChild(el("td", {}, `“${row.token}”${row.target ? " (target)" : ""}`));
      for (const v of [row.p_before, row.p_after, row.p_after - row.p_before, row.logit_before, row.logit_after]) {
        tr.appendChild(el("td", { class: "num" }, fmt(v)));
      }
      tbody.appendChild(tr);
    }
    table.appendChild(tbody);
    resultBox.appendChild(table);
  }

  fetch(root.dataset.src).then((r) => {
    if (!r.ok) throw new Error(`the graph data answered ${r.status}`);
    return r.json();
  }).then((payload) => {
    data = payload;
    byId = new Map(data.nodes.map((n) => [n.id, n]));
    renderPins();
    draw();
    if (slider) slider.addEventListener("input", draw);
    if (form && data.intervene) form.addEventListener("submit", intervene);
    window.addEventListener("resize", draw);
    root.dataset.ready = "1";
  }).catch((err) => {
    root.replaceChildren(el("p", { class: "error" }, "Could not load the graph: " + err.message));
  });
})();
