// /executions/<id>: polls the execution every 2 s until it is completed or failed, with a
// progress bar, a live announcement, the prompts that failed and a gallery of the images.

import { api } from "../api.js";
import { formatDate, h, statusLabel } from "../dom.js";
import { describeError } from "../messages.js";

const POLL_MS = 2000;
const FINISHED = new Set(["completed", "failed"]);
const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif" };

export async function renderExecution({ root, params, setTitle, showPageError, signal }) {
  const id = params[0];
  setTitle("Exécution");
  const heading = h("h1", {}, "Exécution");
  const meta = h("p", { class: "muted" }, "Chargement…");
  const status = h("p", { id: "execution-status", class: "status", "data-status": "" });
  const progress = h("progress", { id: "execution-progress", max: "1", value: "0", "aria-describedby": "execution-progress-text" });
  const progressText = h("p", { id: "execution-progress-text", class: "progress-text", "aria-live": "polite" });
  const executionError = h("p", { id: "execution-error", class: "alert-inline", hidden: true });
  const failuresSection = h("section", { class: "card", "aria-labelledby": "failures-title", hidden: true });
  const failuresList = h("ul", { id: "execution-failures", class: "failures" });
  failuresSection.append(h("h2", { id: "failures-title" }, "Prompts en échec"), failuresList);
  const gallery = h("div", { id: "gallery", class: "gallery" });
  const empty = h("p", { class: "muted" }, "Les images apparaîtront ici au fur et à mesure.");
  const promptsList = h("ol", { class: "prompts" });

  root.append(
    heading,
    meta,
    h("section", { class: "card", "aria-labelledby": "progress-title" },
      h("h2", { id: "progress-title", class: "visually-hidden" }, "Avancement"),
      status,
      h("label", { for: "execution-progress", class: "progress-label" }, "Progression"),
      progress,
      progressText,
      executionError),
    failuresSection,
    h("section", { "aria-labelledby": "gallery-title" }, h("h2", { id: "gallery-title" }, "Images"), empty, gallery),
    h("details", { class: "card" }, h("summary", {}, "Prompts de l'exécution"), promptsList),
    h("p", {}, h("a", { href: "/executions" }, "← Toutes les exécutions"), " · ", h("a", { href: "/" }, "Nouvelle exécution")),
  );

  const figures = new Map(); // index → { figure, url }
  const loading = new Set();
  let timer = null;
  let lastAnnouncement = "";
  let promptsShown = false;
  let pollFailed = false;

  signal.addEventListener("abort", () => {
    clearTimeout(timer);
    for (const { url } of figures.values()) if (url) URL.revokeObjectURL(url);
  });

  function draw(execution) {
    const done = Number(execution.progress?.done) || 0;
    const total = Number(execution.progress?.total) || (execution.prompts || []).length;
    heading.textContent = `Exécution du ${formatDate(execution.createdAt) || "…"}`;
    setTitle(heading.textContent);
    meta.textContent = `Identifiant : ${execution.id}`;
    status.dataset.status = execution.status;
    status.replaceChildren("Statut : ", h("strong", {}, statusLabel(execution.status)));
    progress.max = Math.max(total, 1);
    progress.value = Math.min(done, Math.max(total, 1));
    progress.setAttribute("aria-valuetext", `${done} images sur ${total}`);
    const announcement = `${done} image${done > 1 ? "s" : ""} sur ${total}${FINISHED.has(execution.status) ? ` — ${statusLabel(execution.status).toLowerCase()}` : ""}`;
    if (announcement !== lastAnnouncement) {
      progressText.textContent = announcement;
      lastAnnouncement = announcement;
    }
    executionError.hidden = !execution.error;
    executionError.textContent = execution.error ? `Erreur : ${execution.error}` : "";

    const prompts = execution.prompts || [];
    if (!promptsShown) {
      promptsList.replaceChildren(...prompts.map((prompt) => h("li", {}, prompt)));
      promptsShown = true;
    }

    const failures = execution.failures || [];
    failuresSection.hidden = failures.length === 0;
    failuresList.replaceChildren(...failures.map((failure) => h("li", {},
      h("strong", {}, `Prompt ${failure.index + 1}`),
      prompts[failure.index] ? ` (« ${prompts[failure.index]} »)` : "",
      ` : ${failure.error} `,
      h("span", { class: failure.retrying ? "badge badge-retry" : "badge badge-failed" },
        failure.retrying ? "nouvel essai prévu" : "échec définitif"))));

    for (const result of execution.results || []) {
      if (figures.has(result.index)) continue;
      addFigure(execution, result, prompts[result.index] || "");
      // Only new figures move, into their place: moving a node blurs it, and a keyboard user on
      // a download link would be thrown back to the top at every poll.
      const figure = figures.get(result.index).figure;
      const next = [...gallery.children].find((other) => Number(other.dataset.index) > result.index);
      gallery.insertBefore(figure, next || null);
    }
    empty.hidden = figures.size > 0;
    if (figures.size === 0 && FINISHED.has(execution.status)) empty.textContent = "Aucune image produite.";
  }

  function addFigure(execution, result, prompt) {
    const number = result.index + 1;
    const extension = EXTENSIONS[result.contentType] || "png";
    const fileName = `masstock-${execution.id}-${result.index}.${extension}`;
    const image = h("img", { alt: `Image ${number} : ${prompt}`, width: "512", height: "512", decoding: "async" });
    const link = h("a", { download: fileName, class: "button button-secondary download", "aria-disabled": "true" },
      "Télécharger", h("span", { class: "visually-hidden" }, ` l'image ${number}`));
    const caption = h("figcaption", {}, h("span", { class: "caption-text" }, `${number}. ${prompt}`), link);
    const figure = h("figure", { class: "result", "data-index": String(result.index) }, image, caption);
    const entry = { figure, url: null };
    figures.set(result.index, entry);
    loadImage(entry, result, image, link);
  }

  async function loadImage(entry, result, image, link) {
    if (loading.has(result.index)) return;
    loading.add(result.index);
    try {
      const blob = await api.image(result.url);
      if (signal.aborted) return;
      entry.url = URL.createObjectURL(blob);
      image.src = entry.url;
      link.href = entry.url;
      link.removeAttribute("aria-disabled");
    } catch (error) {
      if (signal.aborted || error.handled) return;
      const retry = h("button", { type: "button", class: "button button-secondary" },
        "Réessayer", h("span", { class: "visually-hidden" }, ` de charger l'image ${result.index + 1}`));
      retry.addEventListener("click", () => {
        retry.remove();
        loadImage(entry, result, image, link);
      });
      entry.figure.querySelector("figcaption").append(retry);
      showPageError(`L'image ${result.index + 1} n'a pas pu être chargée. ${describeError(error)}`);
    } finally {
      loading.delete(result.index);
    }
  }

  async function poll() {
    let execution;
    try {
      execution = await api.execution(id);
    } catch (error) {
      if (signal.aborted || error.handled) return;
      pollFailed = true;
      showPageError(describeError(error));
      if (error.status === 404 || error.status === 400) {
        heading.textContent = "Exécution introuvable";
        meta.textContent = "Cette exécution n'existe pas ou ne vous appartient pas.";
        return;
      }
      // Transient (network, 429, 5xx): keep trying, a little slower.
      timer = setTimeout(poll, error.status === 429 ? POLL_MS * 3 : POLL_MS * 2);
      return;
    }
    if (signal.aborted) return;
    if (pollFailed) showPageError("");
    pollFailed = false;
    draw(execution);
    if (!FINISHED.has(execution.status)) timer = setTimeout(poll, POLL_MS);
  }

  await poll();
}
