/**
 * GET /events as Server-Sent Events: the recent events after `after` (or Last-Event-ID), then every new one as
 * it happens, each as `id`, `event: <type>` and one JSON `data` line. A comment every 15 s keeps proxies from
 * closing an idle stream; a client that cannot keep up is disconnected rather than buffered without bound.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { HostChannel } from '../host/actions.js';
import type { HostEvent } from '../host/events.js';

const KEEPALIVE_MS = 15_000;
const MAX_BUFFERED = 1 << 20;

export async function serveEvents(
  channel: HostChannel,
  req: FastifyRequest,
  reply: FastifyReply,
  afterId: number,
  vm: string | undefined,
): Promise<void> {
  const res = reply.raw;
  let closed = false;
  const send = (e: HostEvent): void => {
    if (closed || (vm && e.vm !== vm)) return;
    if (res.writableLength > MAX_BUFFERED) {
      closed = true;
      res.destroy();
      return;
    }
    res.write(`id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
  };
  // Subscribe before replying so nothing falls between the backlog and the live stream.
  const pending: HostEvent[] = [];
  let live = false;
  const { events, unsubscribe } = await channel.send({
    type: 'events',
    afterId,
    listener: (e) => (live ? send(e) : pending.push(e)),
  });
  reply.hijack();
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
  res.write(': typevisor events\n\n');
  const seen = new Set(events.map((e) => e.id));
  for (const e of events) send(e);
  for (const e of pending) if (!seen.has(e.id)) send(e);
  live = true;
  const keepalive = setInterval(() => !closed && res.write(': keepalive\n\n'), KEEPALIVE_MS);
  const end = (): void => {
    closed = true;
    clearInterval(keepalive);
    unsubscribe?.();
  };
  req.raw.on('close', end);
  res.on('close', end);
  res.on('error', end);
}
