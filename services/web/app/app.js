// MasStock: the app's entry. Reads /config.json, finds out who is signed in, then routes with
// the History API. Each view gets a container and an AbortSignal that fires when the route
// changes, so its timers and late answers stop.

import { api, configure, setUnauthorizedHandler } from "./api.js";
import { describeError } from "./messages.js";
import { renderLogin } from "./views/login.js";
import { renderHome } from "./views/home.js";
import { renderExecutions } from "./views/executions.js";
import { renderExecution } from "./views/execution.js";
import { renderNotFound } from "./views/not-found.js";

const state = { user: null, returnTo: null };

const routes = [
  { pattern: /^\/login\/?$/, view: renderLogin, public: true },
  { pattern: /^\/$/, view: renderHome },
  { pattern: /^\/executions\/?$/, view: renderExecutions },
  { pattern: /^\/executions\/([^/]+)\/?$/, view: renderExecution },
];

const viewRoot = document.getElementById("view");
const pageError = document.getElementById("page-error");
let controller = null;
let flash = null;

/** Shows (or, with `""`, clears) the page-level alert. */
export function showPageError(message) {
  pageError.textContent = message || "";
}

/** Goes to `path`; `replace` keeps the history length; `message` is shown on the new page. */
export function navigate(path, { replace = false, message = null } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  flash = message;
  render();
}

function updateHeader() {
  const signedIn = Boolean(state.user);
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("account").hidden = !signedIn;
  document.getElementById("user-email").textContent = signedIn ? state.user.email : "";
  for (const link of document.querySelectorAll("#nav a")) {
    const current = link.getAttribute("href") === location.pathname;
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function setUser(user) {
  state.user = user;
  updateHeader();
}

function render() {
  if (controller) controller.abort();
  controller = new AbortController();
  const path = location.pathname;
  let params = [];
  const route = routes.find((candidate) => {
    const match = candidate.pattern.exec(path);
    if (match) {
      try {
        params = match.slice(1).map(decodeURIComponent);
      } catch {
        // A malformed %-escape names nothing: the route does not match.
        return false;
      }
    }
    return Boolean(match);
  });
  if (route && !route.public && !state.user) {
    state.returnTo = path + location.search;
    history.replaceState(null, "", "/login");
    return render();
  }
  if (route && route.view === renderLogin && state.user) {
    history.replaceState(null, "", "/");
    return render();
  }
  showPageError(flash || "");
  flash = null;
  updateHeader();
  viewRoot.replaceChildren();
  const context = {
    root: viewRoot,
    params,
    signal: controller.signal,
    navigate,
    showPageError,
    setTitle: (title) => {
      document.title = `${title} · MasStock`;
    },
    user: state.user,
    signedIn: (user) => {
      setUser(user);
      const target = state.returnTo && state.returnTo !== "/login" ? state.returnTo : "/";
      state.returnTo = null;
      navigate(target, { replace: true });
    },
  };
  const view = route ? route.view : renderNotFound;
  // The synchronous part of a view draws its heading; move focus there for screen readers
  // and keyboard users, as a page load would.
  Promise.resolve(view(context)).catch((error) => {
    if (!controller.signal.aborted && !(error && error.handled)) showPageError(describeError(error));
  });
  const heading = viewRoot.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }
}

document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
    return;
  }
  const link = event.target instanceof Element ? event.target.closest("a[href]") : null;
  if (!link || link.hasAttribute("download") || (link.target && link.target !== "_self")) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || link.classList.contains("skip-link")) return;
  event.preventDefault();
  if (url.pathname + url.search !== location.pathname + location.search) navigate(url.pathname + url.search);
  else render();
});

window.addEventListener("popstate", () => render());

document.getElementById("logout").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    await api.logout();
  } catch (error) {
    // The cookies may still be set if the API was unreachable: say so, but leave anyway.
    if (error && error.status === 0) flash = describeError(error);
  } finally {
    button.disabled = false;
  }
  setUser(null);
  state.returnTo = null;
  navigate("/login", { replace: true, message: flash });
});

let booting = true;

setUnauthorizedHandler(() => {
  if (booting) return; // start() decides where to go
  const wasSignedIn = Boolean(state.user);
  if (location.pathname !== "/login") state.returnTo = location.pathname + location.search;
  setUser(null);
  navigate("/login", {
    replace: true,
    message: wasSignedIn ? "Votre session a expiré : reconnectez-vous." : null,
  });
});

async function start() {
  try {
    const response = await fetch("/config.json", { headers: { Accept: "application/json" } });
    if (response.ok) configure((await response.json()).api_base_url);
  } catch {
    configure("");
  }
  // Who is signed in: `me` refreshes an expired access token itself; a 401 after that means no
  // session (handled here, not by the redirect handler, so no "expired" message on a first visit).
  try {
    const me = await api.me();
    setUser(me && me.user ? me.user : null);
  } catch (error) {
    setUser(null);
    if (error && error.status !== 401) flash = describeError(error);
  }
  booting = false;
  render();
}

start();
