/**
 * REST routes for saving and restoring VMs (and, later, snapshots and clones): they parse the body with zod,
 * send one typed host action and return its outcome.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { HostChannel } from '../host/actions.js';
import { HostError } from '../host/errors.js';
import { isValidVmName } from '../host/home.js';
import { describeZodError } from './schemas.js';

const AbsolutePath = z.string().min(1).max(4096);
export const SaveBody = z.object({ path: AbsolutePath, stop: z.boolean().optional() }).strict();
export const SnapshotCreateBody = z
  .object({ name: z.string().min(1).max(63).optional(), diskOnly: z.boolean().optional() })
  .strict();
export const CloneBody = z.object({ name: z.string().min(1).max(63), running: z.boolean().optional() }).strict();
export const RestoreBody = z.object({ path: AbsolutePath, name: z.string().min(1).max(63).optional() }).strict();

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value ?? {});
  if (!r.success) throw new HostError('INVALID_REQUEST', describeZodError(r.error));
  return r.data;
}

function vmName(req: FastifyRequest): string {
  const name = (req.params as { name?: unknown }).name;
  if (!isValidVmName(name)) throw new HostError('INVALID_NAME', `VM name ${JSON.stringify(name)} must match [a-z0-9][a-z0-9-]*`);
  return name;
}

function snapshotName(req: FastifyRequest): string {
  const name = (req.params as { snapshot?: unknown }).snapshot;
  if (!isValidVmName(name))
    throw new HostError('INVALID_NAME', `snapshot name ${JSON.stringify(name)} must match [a-z0-9][a-z0-9-]*`);
  return name;
}

export function registerSnapshotRoutes(app: FastifyInstance, channel: HostChannel): void {
  app.post('/vms/:name/save', async (req) => {
    const body = parse(SaveBody, req.body);
    return channel.send({ type: 'save', name: vmName(req), path: body.path, stop: body.stop ?? false });
  });
  app.get('/vms/:name/snapshots', async (req) => ({
    snapshots: await channel.send({ type: 'snapshot-list', name: vmName(req) }),
  }));
  app.post('/vms/:name/snapshots', async (req, reply) => {
    const body = parse(SnapshotCreateBody, req.body);
    const out = await channel.send({
      type: 'snapshot-create',
      name: vmName(req),
      snapshot: body.name,
      diskOnly: body.diskOnly ?? false,
    });
    return reply.code(201).send(out);
  });
  app.post('/vms/:name/snapshots/:snapshot/restore', async (req) =>
    channel.send({ type: 'snapshot-restore', name: vmName(req), snapshot: snapshotName(req) }),
  );
  app.delete('/vms/:name/snapshots/:snapshot', async (req) =>
    channel.send({ type: 'snapshot-delete', name: vmName(req), snapshot: snapshotName(req) }),
  );
  app.post('/vms/:name/clone', async (req, reply) => {
    const body = parse(CloneBody, req.body);
    const out = await channel.send({ type: 'clone', source: vmName(req), target: body.name, running: body.running ?? false });
    return reply.code(201).send(out);
  });
  app.post('/restore', async (req, reply) => {
    const body = parse(RestoreBody, req.body);
    const out = await channel.send({ type: 'restore', path: body.path, newName: body.name });
    return reply.code(201).send(out);
  });
}
