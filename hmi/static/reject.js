// Reject detail: each over-threshold patch with its heatmap over it, score vs threshold, its frame.
"use strict";

function imageCard(acq, p, kind, caption) {
  const src = `/api/acquisitions/${encodeURIComponent(acq)}/images/${p.frame}/${p.vial}/${p.region}/${kind}.png`;
  return el("figure", { class: "image" }, el("img", { src, alt: caption + " " + p.region_id + " vial " + (p.vial + 1),
                                                       class: "patch-image " + kind }),
            el("figcaption", {}, caption));
}

async function loadReject() {
  const acq = document.getElementById("reject").dataset.acquisition;
  const problem = document.getElementById("acq-problem");
  let data;
  try {
    data = await getJSON("/api/acquisitions/" + encodeURIComponent(acq));
  } catch (err) {
    problem.hidden = false;
    problem.textContent = err.message;
    document.getElementById("acq-summary").textContent = "";
    return;
  }
  const v = data.verdict;
  document.getElementById("acq-summary").textContent =
    `${v.decision} · product ${v.product_id} run ${v.run_index} · strip score ${fmt(v.strip_score, 4)} · ` +
    `worst margin ${signed(v.worst_margin, 4)} · model v${v.model_version} (${data.threshold_set} thresholds) · ` +
    `${data.patches.length} patch(es) over threshold · from the ${data.source === "live" ? "live stream" : "audit store"}`;
  if (data.heatmaps && data.heatmaps.code !== "OK") {
    problem.hidden = false;
    problem.textContent = (data.heatmaps.code === "NOT_FOUND" ? "Heatmaps no longer kept: " : "Heatmaps unavailable: ")
                          + data.heatmaps.problem;
  }
  const cards = data.patches.map((p) => {
    const head = el("div", { class: "patch-head" },
      el("strong", {}, `${p.region_id} · vial ${p.vial + 1} · frame ${p.frame}`),
      el("span", { class: "score" }, `score ${p.score.toFixed(4)} vs threshold ${p.threshold.toFixed(4)} ` +
                                     `(${signed(p.margin, 4)}${p.ratio ? ", " + (100 * p.ratio).toFixed(0) + " %" : ""})`));
    const images = el("div", { class: "images" });
    if (p.has_images) {
      if (data.heatmaps.with_patch) {
        images.append(imageCard(acq, p, "patch", "patch as inspected"),
                      imageCard(acq, p, "overlay", "heatmap over the patch"));
      }
      images.append(imageCard(acq, p, "heatmap", "heatmap (false colour)"));
    } else {
      images.append(el("p", { class: "muted" }, "no heatmap kept for this patch"));
    }
    return el("article", { class: "patch-card", "data-patch": `${p.frame}-${p.vial}-${p.region}` }, head, images);
  });
  document.getElementById("patches").replaceChildren(...cards);
  const audit = document.getElementById("audit-link");
  audit.href = "/audit?id=" + encodeURIComponent(acq);
  audit.hidden = false;
}

document.addEventListener("DOMContentLoaded", loadReject);
