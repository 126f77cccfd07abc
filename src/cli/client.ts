/**
 * The CLI's client for the daemon API: over the unix socket by default (no token), or a URL given with --url /
 * $TYPEVISOR_URL (TCP, bearer token from --token / $TYPEVISOR_TOKEN / the home's token file; https:// URLs trust
 * the system CAs plus --ca / $TYPEVISOR_CA). Also the exit codes every daemon-facing verb uses.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import WebSocket from 'ws';
import { defaultHome, homeLayout } from '../host/home.js';

/** Exit statuses of the daemon-facing verbs (documented in `typevisor <verb> --help` and docs). */
export const EXIT = {
  OK: 0,
  ERROR: 1, // the daemon refused or failed the request (bad values, engine/storage errors)
  USAGE: 2, // bad command-line arguments
  NOT_FOUND: 3, // no such VM or image
  CONFLICT: 4, // wrong state for the action, or the name is taken
  UNREACHABLE: 5, // no daemon at the socket/URL, or it answered 401
} as const;

export const EXIT_CODES_HELP = `exit status: 0 ok, 1 error, 2 usage, 3 not found, 4 conflict/wrong state, 5 daemon unreachable`;

export interface Endpoint {
  /** Unix socket path, or undefined for TCP. */
  socketPath?: string;
  /** http(s)://host:port for TCP. */
  baseUrl?: string;
  token?: string;
  /** PEM certificates trusted for an https:// daemon besides the system CAs. */
  ca?: string;
}

export interface EndpointOptions {
  url?: string;
  token?: string;
  home?: string;
  /** File with PEM certificates to trust (a self-signed daemon certificate). */
  ca?: string;
}

export class ClientError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
    readonly code?: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ClientError';
  }
}

export function resolveEndpoint(o: EndpointOptions, env: NodeJS.ProcessEnv = process.env): Endpoint {
  const url = tcpAsUrl(o.url ?? env.TYPEVISOR_URL, o.ca ?? env.TYPEVISOR_CA);
  const home = o.home ?? defaultHome(env);
  if (url) {
    if (url.startsWith('unix:')) return { socketPath: url.slice(5) };
    if (!/^https?:\/\/[^/]+\/?$/.test(url))
      throw new ClientError(
        EXIT.USAGE,
        `--url takes unix:/path, tcp:HOST:PORT, http://HOST:PORT or https://HOST:PORT, got ${url}`,
      );
    let token = o.token ?? env.TYPEVISOR_TOKEN;
    if (!token) {
      try {
        token = readFileSync(homeLayout(home).tokenFile, 'utf8').trim();
      } catch {
        /* the server will answer 401 */
      }
    }
    if (o.ca && !url.startsWith('https:')) throw new ClientError(EXIT.USAGE, `--ca applies to https:// URLs, not ${url}`);
    const caFile = url.startsWith('https:') ? (o.ca ?? env.TYPEVISOR_CA) : undefined;
    let ca: string | undefined;
    if (caFile) {
      try {
        ca = readFileSync(caFile, 'utf8');
      } catch (err) {
        throw new ClientError(EXIT.USAGE, `cannot read --ca ${caFile}: ${(err as Error).message}`);
      }
    }
    return { baseUrl: url.replace(/\/$/, ''), token, ca };
  }
  return { socketPath: homeLayout(home).socket };
}

/**
 * `tcp:HOST:PORT`, the daemon's own --listen spelling, as a URL: https:// when a CA is given (a TLS daemon),
 * else http://. IPv6 hosts keep their brackets (tcp:[::1]:8080).
 */
export function tcpAsUrl(url: string | undefined, ca: string | undefined): string | undefined {
  if (!url?.startsWith('tcp:')) return url;
  const m = /^tcp:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(url);
  if (!m) throw new ClientError(EXIT.USAGE, `--url tcp: takes tcp:HOST:PORT, got ${url}`);
  return `${ca ? 'https' : 'http'}://${m[1]}:${m[2]}`;
}

export interface Reply {
  status: number;
  body: Buffer;
  contentType: string;
}

function statusExit(status: number): number {
  if (status === 404) return EXIT.NOT_FOUND;
  if (status === 409) return EXIT.CONFLICT;
  if (status === 401) return EXIT.UNREACHABLE;
  return EXIT.ERROR;
}

export class Client {
  constructor(readonly endpoint: Endpoint) {}

  raw(method: string, path: string, body?: unknown, timeoutMs = 120_000): Promise<Reply> {
    const e = this.endpoint;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = {};
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    if (e.token) headers.authorization = `Bearer ${e.token}`;
    const target = e.socketPath ? { socketPath: e.socketPath, path } : { ...splitUrl(e.baseUrl!), path };
    const secure = e.baseUrl?.startsWith('https:') ?? false;
    const send = secure ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const options = { ...target, method, headers, timeout: timeoutMs, ...(secure ? trust(e) : {}) };
      const req = send(options, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks),
            contentType: String(res.headers['content-type'] ?? ''),
          }),
        );
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => {
        const where = e.socketPath ?? e.baseUrl;
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'EACCES') {
          reject(
            new ClientError(
              EXIT.UNREACHABLE,
              `cannot reach the typevisor daemon at ${where} (${err.code}); start it with 'typevisor daemon'`,
            ),
          );
        } else reject(new ClientError(EXIT.UNREACHABLE, `daemon at ${where}: ${err.message}`));
      });
      if (payload) req.write(payload);
      req.end();
    });
  }

  /** A JSON request; a non-2xx answer becomes a ClientError with the daemon's code and message. */
  async json<T>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const r = await this.raw(method, path, body, timeoutMs);
    let parsed: unknown;
    try {
      parsed = r.body.length ? JSON.parse(r.body.toString('utf8')) : undefined;
    } catch {
      parsed = undefined;
    }
    if (r.status < 200 || r.status >= 300) {
      const err = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new ClientError(statusExit(r.status), err?.message ?? `HTTP ${r.status}`, err?.code, r.status);
    }
    return parsed as T;
  }

  async text(path: string): Promise<Buffer> {
    const r = await this.raw('GET', path);
    if (r.status !== 200) {
      let msg = `HTTP ${r.status}`;
      let code: string | undefined;
      try {
        const e = (JSON.parse(r.body.toString('utf8')) as { error: { code: string; message: string } }).error;
        msg = e.message;
        code = e.code;
      } catch {
        /* not JSON */
      }
      throw new ClientError(statusExit(r.status), msg, code, r.status);
    }
    return r.body;
  }

  /**
   * A streaming GET (Server-Sent Events): resolves with the response once its headers arrive; the caller reads
   * the body as it comes. A non-2xx answer is read whole and becomes a ClientError.
   */
  stream(path: string): Promise<IncomingMessage> {
    const e = this.endpoint;
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (e.token) headers.authorization = `Bearer ${e.token}`;
    const target = e.socketPath ? { socketPath: e.socketPath, path } : { ...splitUrl(e.baseUrl!), path };
    const secure = e.baseUrl?.startsWith('https:') ?? false;
    const send = secure ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send({ ...target, method: 'GET', headers, ...(secure ? trust(e) : {}) }, (res: IncomingMessage) => {
        if ((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300) return resolve(res);
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let msg = `HTTP ${res.statusCode}`;
          let code: string | undefined;
          try {
            const err = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error: { code: string; message: string } })
              .error;
            msg = err.message;
            code = err.code;
          } catch {
            /* not JSON */
          }
          reject(new ClientError(statusExit(res.statusCode ?? 0), msg, code, res.statusCode));
        });
      });
      req.on('error', (err) =>
        reject(new ClientError(EXIT.UNREACHABLE, `daemon at ${e.socketPath ?? e.baseUrl}: ${err.message}`)),
      );
      req.end();
    });
  }

  /** Opens a WebSocket to `path` (the console). */
  websocket(path: string): WebSocket {
    const e = this.endpoint;
    const url = e.socketPath ? `ws+unix://${e.socketPath}:${path}` : `${e.baseUrl!.replace(/^http/, 'ws')}${path}`;
    return new WebSocket(url, { headers: e.token ? { authorization: `Bearer ${e.token}` } : {}, ...trust(e) });
  }
}

/** TLS trust for an endpoint: the system CAs, plus --ca (Node's `ca` option replaces the defaults, so both go in). */
function trust(e: Endpoint): { ca?: string[] } {
  return e.ca ? { ca: [...rootCertificates, e.ca] } : {};
}

function splitUrl(base: string): { host: string; port: number } {
  const u = new URL(base);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)) };
}
