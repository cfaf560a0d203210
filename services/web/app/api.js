// The API client: every call carries the session cookies (`credentials: "include"`), a 401 is
// answered by one refresh (shared by concurrent callers: a refresh token presented twice ends the
// whole session) and one retry, and every failure becomes an `ApiError` the views can put in words.

let base = "";
let onUnauthorized = () => {};
let refreshing = null;

/** Where the API lives: `api_base_url` from `/config.json`, or this origin when it is empty. */
export function configure(apiBaseUrl) {
  base = (apiBaseUrl || "").replace(/\/+$/, "");
}

/** Called once a request is still 401 after a refresh: the session is over. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** An absolute URL for an API path (`/api/v1/...`); absolute URLs are kept. */
export function apiUrl(path) {
  return /^https?:\/\//i.test(path) ? path : base + path;
}

export class ApiError extends Error {
  /**
   * @param {number} status 0 for a network failure
   * @param {object|null} body the JSON error body, when there is one
   * @param {object} [extra] `retryAfter` (seconds), `handled` (a 401 already sent to /login)
   */
  constructor(status, body, extra = {}) {
    super(body && body.error ? body.error : status === 0 ? "network" : `http ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
    this.code = body && typeof body.error === "string" ? body.error : null;
    this.issues = body && Array.isArray(body.issues) ? body.issues : [];
    this.retryAfter = extra.retryAfter ?? null;
    this.handled = Boolean(extra.handled);
  }
}

async function send(path, options) {
  const init = {
    method: options.method || "GET",
    credentials: "include",
    headers: { Accept: options.blob ? "*/*" : "application/json" },
  };
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  try {
    return await fetch(apiUrl(path), init);
  } catch {
    throw new ApiError(0, null);
  }
}

/** One refresh at a time; resolves to whether new cookies were set. */
export function refreshSession() {
  if (!refreshing) {
    refreshing = fetch(apiUrl("/api/v1/auth/refresh"), { method: "POST", credentials: "include" })
      .then((response) => response.ok)
      .catch(() => false)
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

async function failure(response, extra = {}) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return new ApiError(response.status, body, { ...extra, retryAfter: Number.isFinite(retryAfter) ? retryAfter : null });
}

/**
 * Calls the API. Options: `method`, `body` (sent as JSON), `blob` (answer as a Blob),
 * `auth: false` (a 401 is an answer, not an expired session: login, logout).
 */
export async function request(path, options = {}) {
  let response = await send(path, options);
  if (response.status === 401 && options.auth !== false) {
    if (await refreshSession()) {
      response = await send(path, options);
    }
    if (response.status === 401) {
      const error = await failure(response, { handled: true });
      onUnauthorized();
      throw error;
    }
  }
  if (!response.ok) {
    throw await failure(response);
  }
  if (options.blob) {
    return response.blob();
  }
  if (response.status === 204) {
    return null;
  }
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export const api = {
  me: () => request("/api/v1/auth/me"),
  login: (email, password) => request("/api/v1/auth/login", { method: "POST", body: { email, password }, auth: false }),
  logout: () => request("/api/v1/auth/logout", { method: "POST", auth: false }),
  workflows: () => request("/api/v1/workflows"),
  createExecution: (workflowId, prompts) =>
    request("/api/v1/executions", { method: "POST", body: { workflowId, prompts, config: {} } }),
  executions: (cursor, limit = 20) => {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return request(`/api/v1/executions?${query}`);
  },
  execution: (id) => request(`/api/v1/executions/${encodeURIComponent(id)}`),
  image: (url) => request(url, { blob: true }),
};
