/**
 * The REST API (fastify). Handlers parse requests with the zod schemas, turn them into typed host actions and
 * send them over the HostChannel; they never touch a VM or worker. Every failure becomes a 4xx/5xx JSON body
 * `{ error: { code, message } }`, and nothing a client sends can throw past the error handler.
 */
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import websocket from '@fastify/websocket';
import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { HostChannel } from '../host/actions.js';
import { HostError, httpStatusFor } from '../host/errors.js';
import { isValidVmName } from '../host/home.js';
import { ApiMetrics } from './metrics.js';
import { serveEvents } from './events-route.js';
import type { Logger } from 'pino';
import { registerSnapshotRoutes } from './snapshot-routes.js';
import { openApiDocument } from './openapi.js';
import { WebConsole } from './web.js';
import {
  ActionBody,
  ActionName,
  CreateNetworkBody,
  CreateVmBody,
  DeleteQuery,
  ImportImageBody,
  EventsQuery,
  HistoryQuery,
  ExecBody,
  ListQuery,
  describeZodError,
  UpdateVmBody,
  type ApiErrorCode,
} from './schemas.js';

export interface ApiOptions {
  channel: HostChannel;
  /** When set, every request must carry `Authorization: Bearer <token>` (TCP listeners). */
  token?: string;
  /** Request bodies above this are refused with 413. */
  bodyLimit?: number;
  /** Serve HTTPS (and WSS) with this PEM certificate chain and key. */
  tls?: { cert: string; key: string };
  log?: (line: string) => void;
  /** Where the built web console lives (default: dist/web); tests point it elsewhere. */
  webDir?: string;
  /** Structured logger: one line per request (method, url, status, ms). */
  logger?: Logger;
}

/** Request body limit of POST /vms/:name/exec (every other route keeps the 64 KiB default). */
export const EXEC_BODY_LIMIT = 32 * 1024 * 1024;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new ApiError(400, 'INVALID_REQUEST', describeZodError(r.error));
  return r.data;
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64');
}

function nameParam(req: FastifyRequest): string {
  const name = (req.params as { name?: unknown }).name;
  if (!isValidVmName(name))
    throw new ApiError(400, 'INVALID_NAME', `VM name ${JSON.stringify(name)} must match [a-z0-9][a-z0-9-]*`);
  return name;
}

function sendError(reply: FastifyReply, status: number, code: ApiErrorCode, message: string): FastifyReply {
  return reply.code(status).type('application/json').send({ error: { code, message } });
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer (\S+)$/.exec(header ?? '');
  if (!m) return false;
  const a = Buffer.from(m[1]!);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Maps fastify's own errors (bad JSON, too large, wrong content type) to our codes. */
function classify(err: FastifyError | Error): { status: number; code: ApiErrorCode; message: string } {
  if (err instanceof ApiError) return { status: err.status, code: err.code, message: err.message };
  if (err instanceof HostError) return { status: httpStatusFor(err.kind), code: err.code, message: err.message };
  const f = err as FastifyError;
  switch (f.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, code: 'BODY_TOO_LARGE', message: 'request body too large' };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: 'send application/json' };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { status: 400, code: 'INVALID_JSON', message: f.message };
  }
  if (err instanceof SyntaxError || f.statusCode === 400)
    return { status: 400, code: 'INVALID_JSON', message: `body is not valid JSON: ${err.message}` };
  if (typeof f.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) {
    return { status: f.statusCode, code: 'INVALID_REQUEST', message: err.message };
  }
  return { status: 500, code: 'INTERNAL', message: err.message };
}

export async function buildApi(opts: ApiOptions): Promise<FastifyInstance> {
  const { channel } = opts;
  const log = opts.log ?? (() => {});
  const app = Fastify({
    logger: false,
    bodyLimit: opts.bodyLimit ?? 64 * 1024,
    // Names are validated by handlers; a huge path is refused before routing.
    routerOptions: { maxParamLength: 200 },
    forceCloseConnections: true,
    ...(opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2' as const } } : {}),
    // An HTTPS instance is typed over https.Server; routes and hooks do not depend on the difference.
  }) as unknown as FastifyInstance;

  app.setErrorHandler((err: FastifyError, _req, reply) => {
    const { status, code, message } = classify(err);
    if (status >= 500) log(`request failed: ${err.stack ?? err.message}`);
    return sendError(reply, status, code, message);
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, 404, 'NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`));

  const web = new WebConsole({ token: opts.token, secure: opts.tls !== undefined, staticDir: opts.webDir });
  if (opts.token) {
    const token = opts.token;
    app.addHook('onRequest', async (req, reply) => {
      if (tokenMatches(req.headers.authorization, token)) return;
      // Browsers: the console's pages are public, and a cookie session stands in for the token.
      const auth = web.authorize(req);
      if (auth.kind === 'refused') {
        await sendError(reply, auth.status, auth.code, auth.message);
        return reply;
      }
      if (auth.kind === 'none') {
        await sendError(reply.header('www-authenticate', 'Bearer'), 401, 'UNAUTHORIZED', 'missing or wrong bearer token');
        return reply;
      }
    });
  }

  const metrics = new ApiMetrics();
  app.addHook('onResponse', async (req, reply) => {
    const ms = reply.elapsedTime;
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requestDuration.observe({ method: req.method, route, status_code: String(reply.statusCode) }, ms / 1000);
    const vm = (req.params as { name?: unknown } | undefined)?.name;
    opts.logger?.info(
      {
        req: { method: req.method, url: req.url },
        ...(isValidVmName(vm) ? { vm } : {}),
        status: reply.statusCode,
        ms: Math.round(ms * 10) / 10,
      },
      'api request',
    );
  });

  // An upgrade request leaves the HTTP server's connection tracking, so forceCloseConnections does not end it:
  // one refused before the upgrade (403, 404) whose client went away could be left half-closed, and the server's
  // close then waited for it forever (the daemon never exited on SIGTERM). Closing ends them all.
  const upgraded = new Set<Duplex>();
  app.server.on('upgrade', (_req, socket: Duplex) => {
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
  });
  app.addHook('preClose', (done) => {
    for (const socket of upgraded) socket.destroy();
    done();
  });

  await app.register(websocket, { options: { maxPayload: 64 * 1024 } });
  await web.register(app);

  app.get('/openapi.json', async () => openApiDocument());

  app.get('/vms', async (req) => {
    const q = parse(ListQuery, req.query);
    const withStats = q.stats === 'true' || q.stats === '1';
    return { vms: await channel.send(withStats ? { type: 'stats-all' } : { type: 'list' }) };
  });

  app.post('/vms', async (req, reply) => {
    const body = parse(CreateVmBody, req.body);
    const vm = await channel.send({ type: 'create', spec: body });
    return reply.code(201).send(vm);
  });

  app.get('/vms/:name', async (req) => channel.send({ type: 'get', name: nameParam(req), withStats: true }));

  app.patch('/vms/:name', async (req) => {
    const name = nameParam(req);
    return channel.send({ type: 'update', name, patch: parse(UpdateVmBody, req.body) });
  });

  app.delete('/vms/:name', async (req) => {
    const name = nameParam(req);
    const q = parse(DeleteQuery, req.query);
    return channel.send({ type: 'delete', name, force: q.force === 'true' || q.force === '1' });
  });

  app.post('/vms/:name/actions/:action', async (req) => {
    const name = nameParam(req);
    const actionRaw = (req.params as { action?: string }).action;
    const action = ActionName.safeParse(actionRaw);
    if (!action.success)
      throw new ApiError(
        404,
        'UNKNOWN_ACTION',
        `unknown action ${JSON.stringify(actionRaw)}; one of ${ActionName.options.join(', ')}`,
      );
    const body = parse(ActionBody, req.body ?? {});
    if (body.graceful !== undefined && action.data !== 'reboot')
      throw new ApiError(400, 'INVALID_REQUEST', `graceful applies to reboot only (${action.data} is given)`);
    return channel.send({
      type: 'action',
      name,
      action: action.data,
      timeoutMs: body.timeoutSeconds !== undefined ? body.timeoutSeconds * 1000 : undefined,
      graceful: body.graceful,
    });
  });

  // Larger bodies than elsewhere: up to 8 MiB of stdin (base64) and 256 arguments of up to 64 KiB.
  app.post('/vms/:name/exec', { bodyLimit: EXEC_BODY_LIMIT }, async (req) => {
    const name = nameParam(req);
    const body = parse(ExecBody, req.body);
    const result = await channel.send({
      type: 'exec',
      name,
      request: {
        argv: body.argv,
        stdin: body.stdin !== undefined ? new Uint8Array(Buffer.from(body.stdin, 'base64')) : undefined,
        cwd: body.cwd,
        env: body.env,
        timeoutMs: body.timeoutMs,
      },
    });
    return {
      exitCode: result.exitCode,
      stdout: base64(result.stdout),
      stderr: base64(result.stderr),
      truncated: result.truncated,
      durationMs: result.durationMs,
    };
  });

  app.get('/vms/:name/console.log', async (req, reply) => {
    const bytes = await channel.send({ type: 'console-log', name: nameParam(req) });
    return reply.type('text/plain; charset=utf-8').send(bytes);
  });

  app.get(
    '/vms/:name/console',
    {
      websocket: true,
      // Refuse bad names and unknown VMs with a normal HTTP error before upgrading.
      preValidation: async (req) => {
        await channel.send({ type: 'get', name: nameParam(req), withStats: false });
      },
    },
    async (socket, req) => {
      const name = nameParam(req);
      let session: Awaited<
        ReturnType<typeof channel.send<{ type: 'console-attach'; name: string; viewer: { output(b: Uint8Array): void } }>>
      >;
      try {
        session = await channel.send({
          type: 'console-attach',
          name,
          viewer: {
            output(bytes) {
              // A viewer that cannot keep up loses output rather than growing the daemon's memory.
              if (socket.readyState === socket.OPEN && socket.bufferedAmount < 1 << 20) socket.send(bytes);
            },
          },
        });
      } catch (err) {
        socket.close(1011, (err as Error).message.slice(0, 120));
        return;
      }
      socket.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
        const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
        session.write(bytes);
      });
      socket.on('close', () => session.close());
      socket.on('error', () => session.close());
    },
  );

  app.get('/images', async () => ({ images: await channel.send({ type: 'image-list' }) }));
  app.post('/images', async (req, reply) => {
    const spec = parse(ImportImageBody, req.body);
    return reply.code(201).send(await channel.send({ type: 'image-import', spec }));
  });
  app.get('/images/:name', async (req) => channel.send({ type: 'image-get', name: nameParam(req) }));
  app.delete('/images/:name', async (req) => channel.send({ type: 'image-delete', name: nameParam(req) }));
  app.get('/networks', async () => ({ networks: await channel.send({ type: 'network-list' }) }));
  app.post('/networks', async (req, reply) => {
    const spec = parse(CreateNetworkBody, req.body);
    return reply.code(201).send(await channel.send({ type: 'network-create', spec }));
  });
  app.get('/networks/:name', async (req) => channel.send({ type: 'network-get', name: nameParam(req) }));
  app.delete('/networks/:name', async (req) => channel.send({ type: 'network-delete', name: nameParam(req) }));

  app.get('/host', async () => channel.send({ type: 'host-info' }));

  app.get('/metrics', async (_req, reply) => {
    const [host, vms] = await Promise.all([channel.send({ type: 'host-info' }), channel.send({ type: 'stats-all' })]);
    return reply.type(metrics.registry.contentType).send(await metrics.render(host, vms));
  });

  const historySeconds = (req: FastifyRequest): number | undefined => {
    const h = parse(HistoryQuery, req.query).history;
    if (h === undefined || h === 'all') return undefined;
    const n = Number(h);
    if (n < 1 || n > 900) throw new ApiError(400, 'INVALID_REQUEST', 'history: seconds from 1 to 900, or all');
    return n;
  };

  app.get('/vms/:name/stats', async (req) => {
    const name = nameParam(req);
    return channel.send({ type: 'vm-history', name, seconds: historySeconds(req) });
  });

  app.get('/host/stats', async (req) => channel.send({ type: 'host-history', seconds: historySeconds(req) }));

  app.get('/events', async (req, reply) => {
    const q = parse(EventsQuery, req.query);
    const header = req.headers['last-event-id'];
    const after =
      q.after !== undefined ? Number(q.after) : typeof header === 'string' && /^\d+$/.test(header) ? Number(header) : 0;
    if (q.follow === 'false' || q.follow === '0') {
      const { events } = await channel.send({ type: 'events', afterId: after });
      return { events: q.vm ? events.filter((e) => e.vm === q.vm) : events };
    }
    return serveEvents(channel, req, reply, after, q.vm);
  });

  app.get('/healthz', async () => ({ ok: true }));

  registerSnapshotRoutes(app, channel);

  return app;
}
