// Points the links marked `data-app-link` at this environment's app.
//
// The same files serve every environment, so the page ships with the production address
// (https://app.masstock.fr/) and the server publishes the environment's own in /config.json:
// {"environment": "...", "api_base_url": "...", "app_url": "..."}. Any failure (no fetch,
// no file, bad JSON, no or unusable `app_url`) leaves the production links as they are.
(function () {
  "use strict";

  if (typeof window.fetch !== "function" || typeof window.URL !== "function") {
    return;
  }

  function appUrl(config) {
    if (!config || typeof config.app_url !== "string" || config.app_url === "") {
      return null;
    }
    var url;
    try {
      url = new URL(config.app_url, window.location.href);
    } catch (e) {
      return null;
    }
    // Only web addresses: never let the config turn a link into `javascript:` or `data:`.
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      return null;
    }
    return url.href;
  }

  window
    .fetch("/config.json", {
      credentials: "same-origin",
      cache: "no-cache",
      headers: { Accept: "application/json" }
    })
    .then(function (response) {
      return response.ok ? response.json() : null;
    })
    .then(function (config) {
      var href = appUrl(config);
      if (href === null) {
        return;
      }
      var links = document.querySelectorAll("a[data-app-link]");
      for (var i = 0; i < links.length; i += 1) {
        links[i].setAttribute("href", href);
      }
    })
    .catch(function () {
      // Keep the production links.
    });
})();
