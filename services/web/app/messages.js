// API errors in French words, and the fields they belong to.

const DEPENDENCIES = { postgres: "la base de données", redis: "la file d'attente" };

/** A page-level sentence for an `ApiError` (or any error). */
export function describeError(error) {
  if (!error || typeof error.status !== "number") {
    return "Une erreur inattendue est survenue. Rechargez la page et réessayez.";
  }
  switch (error.status) {
    case 0:
      return "Impossible de joindre le serveur. Vérifiez votre connexion puis réessayez.";
    case 401:
      return "Votre session a expiré : reconnectez-vous.";
    case 404:
      return "Introuvable : cette ressource n'existe pas ou ne vous appartient pas.";
    case 413:
      return "La demande est trop volumineuse : réduisez le nombre ou la longueur des prompts.";
    case 429:
      return error.retryAfter
        ? `Trop de requêtes : patientez ${error.retryAfter} s avant de réessayer.`
        : "Trop de requêtes : patientez quelques instants avant de réessayer.";
    case 503: {
      const dependency = error.body && DEPENDENCIES[error.body.dependency];
      return dependency
        ? `Service momentanément indisponible (${dependency}). Réessayez dans un instant.`
        : "Service momentanément indisponible. Réessayez dans un instant.";
    }
    default:
      if ((error.status === 400 || error.status === 422) && error.issues.length) {
        return `Demande refusée : ${error.issues.map((issue) => describeIssue(issue)).join(" ; ")}`;
      }
      if (error.status >= 500) {
        return "Erreur du serveur. Réessayez plus tard.";
      }
      return `La demande a échoué (erreur ${error.status}).`;
  }
}

/** The field an issue names: `prompts[3]` → `prompts`, `workflowId` → `workflowId`. */
export function issueField(issue) {
  const path = String(issue.path ?? issue.field ?? "");
  return path.split(/[.[]/)[0];
}

/** The line an issue names in the prompts textarea (`prompts[3]` → 3), if any. */
export function issueIndex(issue) {
  const match = /^\w+\[(\d+)\]/.exec(String(issue.path ?? issue.field ?? ""));
  return match ? Number(match[1]) : null;
}

/** An issue's message in French when we know it, else the API's own words. */
export function describeIssue(issue) {
  const message = String(issue.message || "");
  const known = [
    [/^must not be empty$/, () => "ne doit pas être vide"],
    [/^must not contain NUL characters$/, () => "ne doit pas contenir de caractère NUL"],
    [/^must be at most (\d+) characters, it has (\d+)$/, (m) => `${m[1]} caractères au plus (il en a ${m[2]})`],
    [/^must hold between (\d+) and (\d+) prompts, it holds (\d+)$/, (m) => `de ${m[1]} à ${m[2]} prompts (il y en a ${m[3]})`],
    [/^must be a UUID$/, () => "identifiant invalide"],
    [/^no such workflow$/, () => "ce workflow n'existe pas"],
    [/^must be an e-mail address/, () => "adresse e-mail invalide"],
    [/^must be between 1 and 1024 characters$/, () => "de 1 à 1024 caractères"],
  ];
  for (const [pattern, french] of known) {
    const match = pattern.exec(message);
    if (match) return french(match);
  }
  return message || "valeur invalide";
}
