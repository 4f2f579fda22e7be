// Products: the k-of-n state of each product, and for a labelled kit whether it is correctly classified.
"use strict";

let shownReceived = -1;

async function loadProducts() {
  let data;
  try { data = await getJSON("/api/products"); } catch (err) { return; }
  const s = data.summary;
  document.getElementById("products-summary").textContent =
    `${s.products} products · ${s.pending} pending · ` +
    (s.judged ? `correctly classified ${s.correct} of ${s.judged} judged (${pct(s.accuracy)})`
              : (data.labels_file ? "no labelled product judged yet" : "no kit labels given: correctness not judged"));
  const rows = data.rows.map((r) => el("tr", { class: r.correct === false ? "wrong" : "" },
    el("td", {}, r.product_id), el("td", {}, r.label || "–"), el("td", { class: "num" }, `${r.runs} / ${r.n}`),
    el("td", { class: "num" }, r.accepts), el("td", { class: "num" }, r.rejects),
    el("td", { class: "decision " + r.product_verdict.toLowerCase() }, r.product_verdict),
    el("td", {}, r.correct === null ? "–" : (r.correct ? "yes" : "NO")), el("td", { class: "why" }, r.why)));
  document.querySelector("#products-table tbody").replaceChildren(...rows);
}

HMI.on("summary", (s) => { if (s.received !== shownReceived) { shownReceived = s.received; loadProducts(); } });
document.addEventListener("DOMContentLoaded", loadProducts);
