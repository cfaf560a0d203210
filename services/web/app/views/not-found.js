import { h } from "../dom.js";

export function renderNotFound({ root, setTitle }) {
  setTitle("Page introuvable");
  root.append(
    h("h1", {}, "Page introuvable"),
    h("p", {}, "Cette adresse ne correspond à aucune page de MasStock."),
    h("p", {}, h("a", { href: "/" }, "Retour à l'accueil")),
  );
}
