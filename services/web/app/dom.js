// A small element builder: no innerHTML anywhere, so API text is never markup.

/**
 * `h("a", { href: "/", class: "x", onclick: fn }, "text", child)`. `false`/`null` attributes
 * and children are skipped; `true` sets an empty attribute.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "class") element.className = value;
    else if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === false || child === null || child === undefined) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Shows a field's error under it and links it for assistive technology; `""` clears it. */
export function setFieldError(input, errorElement, message) {
  errorElement.textContent = message || "";
  errorElement.hidden = !message;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

/** `24/11/2026 à 03:20`. */
export function formatDate(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const day = date.toLocaleDateString("fr-FR");
  const time = date.toLocaleTimeString("fr-FR", { hour: "2-digit", minute: "2-digit" });
  return `${day} à ${time}`;
}

export const STATUS_LABELS = {
  pending: "En attente",
  processing: "En cours",
  completed: "Terminée",
  failed: "Échouée",
};

export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}
