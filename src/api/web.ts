/**
 * The web console's server side: serves the built front end (dist/web, made by `npm run build`) at `/` and
 * `/ui/...`, and turns the daemon token into a cookie session for browsers.
 *
 * - `POST /session {token}` checks the token (constant time) and sets `tv_session`, HttpOnly and SameSite=Strict
 *   (Secure under TLS). The token travels only in that body, never in a URL. The answer carries the session's CSRF
 *   token, which the page sends back as `X-CSRF-Token` on every request that changes something.
 * - A request authenticated by the cookie must also come from our own origin (when the browser says where it
 *   comes from) and, unless it is GET/HEAD, carry the CSRF token. The console WebSocket is a GET: SameSite=Strict
 *   and the Origin check keep other sites from opening it.
 * - Every response gets a Content-Security-Policy. The page itself allows scripts from our origin only, style
 *   sheets from our origin plus `<style>` elements carrying the per-response nonce (xterm.js creates its style
 *   elements at run time; the page gives them that nonce), and style attributes (xterm.js colours selected
 *   cells with them).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fastifyStatic from '@fastify/static';
import { z } from 'zod';

export const SESSION_COOKIE = 'tv_session';
export const CSRF_HEADER = 'x-csrf-token';
/** Sessions kept at once; logging in past this forgets the least recently used one. */
const MAX_SESSIONS = 64;
const SESSION_IDLE_MS = 12 * 3600_000;
const NONCE_PLACEHOLDER = '__CSP_NONCE__';

export interface WebOptions {
  /** The daemon token (TCP listeners). Without one (the unix socket) every request is already trusted. */
  token?: string;
  /** Mark the cookie Secure (the listener speaks TLS). */
  secure: boolean;
  /** The built front end; defaults to dist/web next to this module's build. */
  staticDir?: string;
}

export type WebAuth =
  | { kind: 'public' }
  | { kind: 'session' }
  | { kind: 'none' }
  | { kind: 'refused'; status: 403; code: 'CSRF_REJECTED'; message: string };

interface Session {
  csrf: string;
  lastUsed: number;
}

export const LoginBody = z.object({ token: z.string().min(1).max(256).describe('the daemon token (<home>/token)') }).strict();
export const SessionSchema = z.object({
  authenticated: z.boolean(),
  auth: z.enum(['session', 'none']).describe("'none' on the unix socket, where no login is needed"),
  csrfToken: z.string().describe('send back as X-CSRF-Token on every cookie request other than GET/HEAD'),
});

/** dist/web from dist/src/api (built) or from src/api (run through tsx). */
export function defaultStaticDir(): string {
  const built = fileURLToPath(new URL('../../web/', import.meta.url));
  if (existsSync(built + 'index.html')) return built;
  return fileURLToPath(new URL('../../dist/web/', import.meta.url));
}

function constantTimeEqual(a: string, b: string): boolean {
  // Hashing first makes the comparison independent of the lengths too.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The Content-Security-Policy of the HTML page. */
export function pageCsp(nonce: string): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    `style-src 'self' 'nonce-${nonce}'`,
    // xterm.js's DOM renderer colours selected (and 24-bit coloured) cells through style attributes. Attributes
    // cannot run script or load anything img-src/font-src would not allow; <style> elements still need the nonce.
    "style-src-attr 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}
/** Everything that is not the page (JSON, assets) renders nothing and may not be framed. */
const OTHER_CSP = "default-src 'none'; frame-ancestors 'none'";

function isPublicPath(method: string, path: string): boolean {
  if (method === 'GET' || method === 'HEAD')
    return path === '/' || path === '/ui' || path.startsWith('/ui/') || path === '/session';
  return method === 'POST' && path === '/session';
}

/** True when the request names no origin, or names the one it was sent to (same scheme-less host:port). */
function sameOrigin(req: FastifyRequest): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

export class WebConsole {
  private readonly sessions = new Map<string, Session>();
  private readonly staticDir: string;
  private indexTemplate: string | undefined;

  constructor(private readonly opts: WebOptions) {
    this.staticDir = opts.staticDir ?? defaultStaticDir();
  }

  /**
   * Called from the API's onRequest hook when a TCP listener needs authentication and the bearer token did not
   * match: public pages pass, a valid cookie session passes if the CSRF rules hold.
   */
  authorize(req: FastifyRequest): WebAuth {
    const path = req.url.split('?')[0]!;
    if (isPublicPath(req.method, path)) return { kind: 'public' };
    const session = this.sessionOf(req);
    if (!session) return { kind: 'none' };
    if (!sameOrigin(req)) return { kind: 'refused', status: 403, code: 'CSRF_REJECTED', message: 'cross-origin request refused' };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const sent = req.headers[CSRF_HEADER];
      if (typeof sent !== 'string' || !constantTimeEqual(sent, session.csrf))
        return { kind: 'refused', status: 403, code: 'CSRF_REJECTED', message: `missing or wrong ${CSRF_HEADER} header` };
    }
    return { kind: 'session' };
  }

  private sessionOf(req: FastifyRequest): Session | undefined {
    const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    const now = Date.now();
    if (now - s.lastUsed > SESSION_IDLE_MS) {
      this.sessions.delete(id);
      return undefined;
    }
    s.lastUsed = now;
    // Re-insert so the map's order is least recently used first.
    this.sessions.delete(id);
    this.sessions.set(id, s);
    return s;
  }

  private cookie(value: string, maxAge?: number): string {
    return [
      `${SESSION_COOKIE}=${value}`,
      'Path=/',
      'HttpOnly',
      'SameSite=Strict',
      ...(this.opts.secure ? ['Secure'] : []),
      ...(maxAge !== undefined ? [`Max-Age=${maxAge}`] : []),
    ].join('; ');
  }

  private indexHtml(): string | undefined {
    if (this.indexTemplate === undefined) {
      const file = this.staticDir + 'index.html';
      if (!existsSync(file)) return undefined;
      this.indexTemplate = readFileSync(file, 'utf8');
    }
    return this.indexTemplate;
  }

  private sendPage(reply: FastifyReply): FastifyReply {
    const html = this.indexHtml();
    if (html === undefined) {
      return reply
        .code(503)
        .type('application/json')
        .send({
          error: { code: 'WEB_NOT_BUILT', message: `the web console is not built (${this.staticDir}): run npm run build` },
        });
    }
    const nonce = randomBytes(16).toString('base64');
    return reply
      .header('content-security-policy', pageCsp(nonce))
      .header('cache-control', 'no-store')
      .type('text/html; charset=utf-8')
      .send(html.replaceAll(NONCE_PLACEHOLDER, nonce));
  }

  async register(app: FastifyInstance): Promise<void> {
    app.addHook('onSend', async (_req, reply, payload) => {
      if (!reply.hasHeader('content-security-policy')) reply.header('content-security-policy', OTHER_CSP);
      reply.header('x-content-type-options', 'nosniff');
      reply.header('referrer-policy', 'no-referrer');
      reply.header('x-frame-options', 'DENY');
      return payload;
    });

    if (existsSync(this.staticDir + 'assets')) {
      // Asset names carry a content hash, so they can be cached for good.
      await app.register(fastifyStatic, {
        root: this.staticDir + 'assets',
        prefix: '/ui/assets/',
        preCompressed: true,
        immutable: true,
        maxAge: '365d',
        index: false,
        decorateReply: false,
      });
    }
    app.get('/', async (_req, reply) => this.sendPage(reply));
    app.get('/ui', async (_req, reply) => reply.redirect('/ui/'));
    // Every page URL (/ui/vm/NAME, /ui/new...) is the same document: the page routes itself, so URLs bookmark.
    app.get('/ui/*', async (_req, reply) => this.sendPage(reply));

    app.get('/session', async (req, reply) => {
      if (!this.opts.token) return { authenticated: true, auth: 'none', csrfToken: '' };
      const s = this.sessionOf(req);
      if (!s) return reply.code(401).send({ error: { code: 'UNAUTHORIZED', message: 'not logged in' } });
      return { authenticated: true, auth: 'session', csrfToken: s.csrf };
    });

    app.post('/session', async (req, reply) => {
      if (!sameOrigin(req))
        return reply.code(403).send({ error: { code: 'CSRF_REJECTED', message: 'cross-origin login refused' } });
      const body = LoginBody.safeParse(req.body);
      if (!body.success) return reply.code(400).send({ error: { code: 'INVALID_REQUEST', message: 'send {"token": "..."}' } });
      if (!this.opts.token) return { authenticated: true, auth: 'none', csrfToken: '' };
      if (!constantTimeEqual(body.data.token, this.opts.token))
        return reply.code(401).send({ error: { code: 'UNAUTHORIZED', message: 'wrong token' } });
      const id = randomBytes(32).toString('base64url');
      const session: Session = { csrf: randomBytes(32).toString('base64url'), lastUsed: Date.now() };
      this.sessions.set(id, session);
      while (this.sessions.size > MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
      return reply.header('set-cookie', this.cookie(id)).send({ authenticated: true, auth: 'session', csrfToken: session.csrf });
    });

    app.delete('/session', async (req, reply) => {
      const id = cookieValue(req.headers.cookie, SESSION_COOKIE);
      if (id) this.sessions.delete(id);
      return reply.header('set-cookie', this.cookie('', 0)).send({ authenticated: false });
    });
  }
}
