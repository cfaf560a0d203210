// /: the workflows and the form that starts an execution (one prompt per line).

import { api } from "../api.js";
import { h, setFieldError } from "../dom.js";
import { describeError, describeIssue, issueField, issueIndex } from "../messages.js";

const MAX_PROMPTS = 50;
const MAX_PROMPT_CHARS = 2000;

/** The textarea's prompts: one per line, blank lines left out. */
export function promptsFrom(text) {
  return text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line.length > 0);
}

export async function renderHome({ root, setTitle, navigate, showPageError, signal }) {
  setTitle("Nouvelle exécution");
  const workflow = h("select", { id: "workflow", name: "workflow", required: true, "aria-describedby": "workflow-hint workflow-error" },
    h("option", { value: "" }, "Chargement des workflows…"));
  const workflowHint = h("p", { id: "workflow-hint", class: "hint" });
  const workflowError = h("p", { id: "workflow-error", class: "field-error", hidden: true });
  const prompts = h("textarea", {
    id: "prompts", name: "prompts", rows: "8", required: true, spellcheck: "true",
    "aria-describedby": "prompts-hint prompts-count prompts-error",
  });
  const promptsHint = h("p", { id: "prompts-hint", class: "hint" },
    `Un prompt par ligne : une image par prompt. De 1 à ${MAX_PROMPTS} prompts, ${MAX_PROMPT_CHARS} caractères chacun au plus.`);
  const promptsCount = h("p", { id: "prompts-count", class: "hint" }, "0 prompt");
  const promptsError = h("p", { id: "prompts-error", class: "field-error", hidden: true });
  const submit = h("button", { id: "execution-submit", type: "submit", class: "button" }, "Lancer la génération");
  const form = h("form", { id: "execution-form", class: "card form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "workflow" }, "Workflow"), workflow, workflowHint, workflowError),
    h("div", { class: "field" }, h("label", { for: "prompts" }, "Prompts"), promptsHint, prompts, promptsCount, promptsError),
    submit,
  );
  root.append(
    h("h1", {}, "Nouvelle exécution"),
    h("p", { class: "muted" }, "Choisissez un workflow et saisissez vos prompts. ",
      h("a", { href: "/executions" }, "Voir l'historique des exécutions")),
    form,
  );

  let workflows = [];
  const describeWorkflow = () => {
    const chosen = workflows.find((item) => item.id === workflow.value);
    workflowHint.textContent = chosen && chosen.promptTemplate
      ? `Modèle de prompt : ${chosen.promptTemplate}`
      : "";
  };
  workflow.addEventListener("change", () => {
    describeWorkflow();
    setFieldError(workflow, workflowError, "");
  });
  prompts.addEventListener("input", () => {
    const count = promptsFrom(prompts.value).length;
    promptsCount.textContent = `${count} prompt${count > 1 ? "s" : ""}`;
    if (prompts.getAttribute("aria-invalid")) setFieldError(prompts, promptsError, "");
  });

  submit.disabled = true;
  try {
    const answer = await api.workflows();
    if (signal.aborted) return;
    workflows = Array.isArray(answer) ? answer : (answer && answer.items) || [];
    workflow.replaceChildren(...workflows.map((item) => h("option", { value: item.id }, item.name)));
    if (workflows.length === 0) {
      workflow.append(h("option", { value: "" }, "Aucun workflow disponible"));
      workflow.disabled = true;
      showPageError("Aucun workflow n'est disponible pour le moment.");
      return;
    }
    describeWorkflow();
    submit.disabled = false;
  } catch (error) {
    if (signal.aborted || error.handled) return;
    workflow.replaceChildren(h("option", { value: "" }, "Workflows indisponibles"));
    showPageError(`Les workflows n'ont pas pu être chargés. ${describeError(error)}`);
    return;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showPageError("");
    setFieldError(workflow, workflowError, "");
    setFieldError(prompts, promptsError, "");
    const list = promptsFrom(prompts.value);
    const problems = [];
    if (!workflow.value) problems.push([workflow, workflowError, "Choisissez un workflow."]);
    if (list.length === 0) problems.push([prompts, promptsError, "Saisissez au moins un prompt."]);
    else if (list.length > MAX_PROMPTS) {
      problems.push([prompts, promptsError, `${MAX_PROMPTS} prompts au plus : vous en avez saisi ${list.length}.`]);
    } else {
      const long = list.findIndex((prompt) => [...prompt].length > MAX_PROMPT_CHARS);
      if (long >= 0) problems.push([prompts, promptsError, `Prompt ${long + 1} : ${MAX_PROMPT_CHARS} caractères au plus.`]);
    }
    if (problems.length) {
      for (const [input, element, message] of problems) setFieldError(input, element, message);
      problems[0][0].focus();
      return;
    }

    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    submit.textContent = "Envoi…";
    try {
      const accepted = await api.createExecution(workflow.value, list);
      if (signal.aborted) return;
      navigate(`/executions/${encodeURIComponent(accepted.id)}`);
    } catch (error) {
      if (signal.aborted || error.handled) return;
      showApiError(error, list);
    } finally {
      submit.disabled = false;
      form.removeAttribute("aria-busy");
      submit.textContent = "Lancer la génération";
    }
  });

  /** Field issues next to their field (a 400, or a 422 for a workflow that no longer exists); anything else in the page alert. */
  function showApiError(error, list) {
    if ((error.status !== 400 && error.status !== 422) || error.issues.length === 0) {
      showPageError(describeError(error));
      return;
    }
    const byField = { prompts: [], workflowId: [] };
    const other = [];
    for (const issue of error.issues) {
      const field = issueField(issue);
      const index = issueIndex(issue);
      const text = describeIssue(issue);
      if (field === "prompts") {
        byField.prompts.push(index === null ? text : `Prompt ${index + 1} (« ${shorten(list[index] || "")} ») : ${text}`);
      } else if (field === "workflowId") {
        byField.workflowId.push(text);
      } else {
        other.push(issue.path ? `${issue.path} : ${text}` : text);
      }
    }
    const first = [];
    if (byField.workflowId.length) {
      setFieldError(workflow, workflowError, `Workflow : ${byField.workflowId.join(" ; ")}.`);
      first.push(workflow);
    }
    if (byField.prompts.length) {
      setFieldError(prompts, promptsError, `${byField.prompts.join(". ")}.`);
      first.push(prompts);
    }
    if (other.length) showPageError(`Demande refusée : ${other.join(" ; ")}.`);
    if (first.length) first[0].focus();
  }
}

function shorten(text) {
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}
