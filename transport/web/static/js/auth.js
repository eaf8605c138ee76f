// Sign-in: a dev token from POST /api/v1/dev/token when the node has dev auth,
// otherwise a JWT pasted by the user. The session lives in sessionStorage, so
// two tabs can be two users and a reload keeps you signed in.

const KEY = 'parley.session';

export class AuthError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}

/**
 * Reports whether this node hands out dev tokens (it answers 404 not_found
 * when not). The probe asks for a real token, which is thrown away: an
 * invalid request would log a console error on every dev sign-in page.
 */
export async function devAuthAvailable() {
  try {
    const r = await fetch('/api/v1/dev/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_id: 'probe' }),
    });
    if (r.ok) return true;
    const body = await r.json().catch(() => ({}));
    return !(r.status === 404 && body?.error?.code === 'not_found');
  } catch {
    return true; // unreachable now: offer the simple form, the submit will tell
  }
}

/** Gets a dev token for userID. */
export async function devToken(userID) {
  const r = await fetch('/api/v1/dev/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user_id: userID }),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new AuthError(body?.error?.code || 'internal', body?.error?.message || `HTTP ${r.status}`);
  return body.token;
}

/** The `sub` of a JWT (not verified: the server does that). */
export function tokenSubject(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) throw new AuthError('bad_request', 'that is not a JWT');
  try {
    const json = atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'));
    const claims = JSON.parse(json);
    if (typeof claims.sub !== 'string' || !claims.sub) throw new Error('no sub');
    if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) {
      throw new AuthError('unauthorized', 'this token has expired');
    }
    return claims.sub;
  } catch (e) {
    if (e instanceof AuthError) throw e;
    throw new AuthError('bad_request', 'the token has no readable subject');
  }
}

/** Checks the token against this node: false only on a definite 401. */
export async function tokenAccepted(token) {
  try {
    const r = await fetch('/api/v1/conversations', { headers: { Authorization: `Bearer ${token}` } });
    return r.status !== 401;
  } catch {
    return true;
  }
}

export function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) || 'null');
    if (s && typeof s.user === 'string' && typeof s.token === 'string') return s;
  } catch {
    /* ignore a corrupt entry */
  }
  return null;
}

export function saveSession(s) {
  sessionStorage.setItem(KEY, JSON.stringify(s));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}
