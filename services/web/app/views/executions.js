// /executions: the caller's executions, newest first, a page at a time.

import { api } from "../api.js";
import { formatDate, h, statusLabel } from "../dom.js";
import { describeError } from "../messages.js";

export async function renderExecutions({ root, setTitle, showPageError, signal }) {
  setTitle("Historique");
  const list = h("ul", { id: "executions-list", class: "executions", "aria-busy": "true" });
  const empty = h("p", { class: "muted", hidden: true }, "Aucune exécution pour l'instant. ",
    h("a", { href: "/" }, "Lancer une première génération"));
  const more = h("button", { id: "executions-more", type: "button", class: "button button-secondary", hidden: true },
    "Afficher plus");
  root.append(
    h("h1", {}, "Historique des exécutions"),
    h("p", {}, h("a", { href: "/" }, "Nouvelle exécution")),
    list,
    empty,
    more,
  );

  let cursor = null;
  async function load() {
    more.disabled = true;
    list.setAttribute("aria-busy", "true");
    try {
      const page = await api.executions(cursor, 20);
      if (signal.aborted) return;
      const items = page.items || [];
      const firstNew = list.children.length;
      list.append(...items.map(item));
      cursor = page.nextCursor || null;
      more.hidden = !cursor;
      empty.hidden = list.children.length > 0;
      // After "Afficher plus", keyboard focus goes to the first new execution.
      if (firstNew > 0 && items.length) list.children[firstNew].querySelector("a").focus();
    } catch (error) {
      if (signal.aborted || error.handled) return;
      showPageError(`L'historique n'a pas pu être chargé. ${describeError(error)}`);
    } finally {
      more.disabled = false;
      list.removeAttribute("aria-busy");
    }
  }
  more.addEventListener("click", load);
  await load();
}

function item(execution) {
  const done = execution.progress?.done ?? 0;
  const total = execution.progress?.total ?? (execution.prompts || []).length;
  const prompts = execution.prompts || [];
  const first = prompts[0] || "";
  return h("li", { class: "card execution-item" },
    h("a", { href: `/executions/${encodeURIComponent(execution.id)}` }, `Exécution du ${formatDate(execution.createdAt)}`),
    h("p", { class: "execution-line" },
      h("span", { class: `badge badge-${execution.status}`, "data-status": execution.status }, statusLabel(execution.status)),
      ` ${done} image${done > 1 ? "s" : ""} sur ${total}`),
    first ? h("p", { class: "muted execution-prompt" }, prompts.length > 1 ? `${first} (+ ${prompts.length - 1})` : first) : null,
  );
}
