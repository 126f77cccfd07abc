// Every call the page makes to the daemon. The session cookie rides along by itself (same origin); requests that
// change something carry the CSRF token from the login answer.
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
  /** The field an INVALID_REQUEST message names ("memoryMiB: Too big..." → "memoryMiB"), if any. */
  get field(): string | undefined {
    return /^([A-Za-z][\w.]*): /.exec(this.message)?.[1];
  }
}

export interface SessionInfo {
  authenticated: boolean;
  auth: 'session' | 'none';
  csrfToken: string;
}

let csrfToken = '';

async function errorOf(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    return new ApiError(res.status, body.error?.code ?? 'HTTP_' + res.status, body.error?.message ?? res.statusText);
  } catch {
    return new ApiError(res.status, 'HTTP_' + res.status, res.statusText || `HTTP ${res.status}`);
  }
}

/** Called when any request finds the session gone (the daemon restarted, or logged out elsewhere). */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn;
}

export async function request(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['x-csrf-token'] = csrfToken;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401 && path !== '/session') onUnauthorized();
    throw err;
  }
  return res;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  return (await (await request(method, path, body)).json()) as T;
}

export async function currentSession(): Promise<SessionInfo | undefined> {
  try {
    const s = await api<SessionInfo>('GET', '/session');
    csrfToken = s.csrfToken;
    return s;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return undefined;
    throw err;
  }
}

export async function login(token: string): Promise<SessionInfo> {
  const s = await api<SessionInfo>('POST', '/session', { token });
  csrfToken = s.csrfToken;
  return s;
}

export async function logout(): Promise<void> {
  await api('DELETE', '/session');
  csrfToken = '';
}
