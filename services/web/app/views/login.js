// /login: e-mail and password; the API sets the session cookies.

import { api } from "../api.js";
import { h } from "../dom.js";
import { describeError, describeIssue, issueField } from "../messages.js";

export function renderLogin({ root, setTitle, signedIn, signal }) {
  setTitle("Connexion");
  const email = h("input", {
    id: "email", name: "email", type: "email", autocomplete: "username", required: true,
    inputmode: "email", spellcheck: "false", "aria-describedby": "login-error",
  });
  const password = h("input", {
    id: "password", name: "password", type: "password", autocomplete: "current-password", required: true,
    "aria-describedby": "login-error",
  });
  const error = h("p", { id: "login-error", class: "field-error", role: "alert" });
  const submit = h("button", { id: "login-submit", type: "submit", class: "button" }, "Se connecter");
  const form = h("form", { id: "login-form", class: "card form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "email" }, "Adresse e-mail"), email),
    h("div", { class: "field" }, h("label", { for: "password" }, "Mot de passe"), password),
    error,
    submit,
  );
  root.append(
    h("h1", {}, "Connexion"),
    h("p", { class: "muted" }, "Connectez-vous pour lancer vos générations d'images."),
    form,
  );

  const fail = (message, fields = []) => {
    error.textContent = message;
    for (const input of [email, password]) {
      if (fields.includes(input)) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    (fields[0] || email).focus();
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const missing = [];
    if (!email.value.trim()) missing.push(email);
    if (!password.value) missing.push(password);
    if (missing.length) {
      fail(missing.length === 2 ? "Saisissez votre adresse e-mail et votre mot de passe."
        : missing[0] === email ? "Saisissez votre adresse e-mail." : "Saisissez votre mot de passe.", missing);
      return;
    }
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      const answer = await api.login(email.value.trim(), password.value);
      if (signal.aborted) return;
      signedIn(answer.user);
    } catch (failure) {
      if (signal.aborted) return;
      if (failure.status === 401) {
        password.value = "";
        fail("Adresse e-mail ou mot de passe incorrect.", [password]);
      } else if (failure.status === 400 && failure.issues.length) {
        const labels = { email: "Adresse e-mail", password: "Mot de passe" };
        const inputs = { email, password };
        const fields = [];
        const parts = failure.issues.map((issue) => {
          const field = issueField(issue);
          if (inputs[field]) fields.push(inputs[field]);
          return `${labels[field] || "Formulaire"} : ${describeIssue(issue)}`;
        });
        fail(`${parts.join(". ")}.`, fields);
      } else {
        fail(describeError(failure));
      }
    } finally {
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
}
