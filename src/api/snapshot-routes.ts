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

function body(s: z.ZodType, description: string): Record<string, unknown> {
  const schema = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete schema.$schema;
  return { description, content: { 'application/json': { schema } } };
}

/** The routes above in the OpenAPI document (openapi.ts). */
export function snapshotOpenApiPaths(): Record<string, unknown> {
  const name = { name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' } };
  const snap = { ...name, name: 'snapshot' };
  const ok = (d: string) => ({ description: d });
  const errors = { '400': ok('invalid request'), '404': ok('no such VM or snapshot'), '409': ok('wrong state or name taken') };
  return {
    '/vms/{name}/save': {
      parameters: [name],
      post: {
        summary: 'Save the VM (machine state + disk copies) into a new directory; it runs on unless stop',
        requestBody: { required: true, ...body(SaveBody, 'absolute path of the new directory') },
        responses: { '200': ok('{vm, path, stateBytes, ramChunks, workerMs, totalMs}'), ...errors },
      },
    },
    '/restore': {
      post: {
        summary: 'Create a VM from a save directory and run it from its state (corrupt state: 400 BAD_STATE_FILE)',
        requestBody: { required: true, ...body(RestoreBody, 'the save directory and an optional new name') },
        responses: { '201': ok('{vm, path, stateBytes, ramChunks, workerMs, totalMs}'), ...errors },
      },
    },
    '/vms/{name}/snapshots': {
      parameters: [name],
      get: { summary: 'The VM snapshots (a tree: each names its parent)', responses: { '200': ok('{snapshots}'), ...errors } },
      post: {
        summary: 'Snapshot the disks, and the memory of a running or paused VM unless diskOnly',
        requestBody: { required: false, ...body(SnapshotCreateBody, 'snapshot name (default: snap-<time>)') },
        responses: { '201': ok('{vm, snapshot, workerMs, totalMs}'), ...errors },
      },
    },
    '/vms/{name}/snapshots/{snapshot}/restore': {
      parameters: [name, snap],
      post: {
        summary: 'Revert to the snapshot (a memory snapshot resumes the guest)',
        responses: { '200': ok('{vm, snapshot, workerMs, totalMs}'), ...errors },
      },
    },
    '/vms/{name}/snapshots/{snapshot}': {
      parameters: [name, snap],
      delete: {
        summary: 'Delete the snapshot (any one, also in the middle of a chain)',
        responses: { '200': ok('{deleted}'), ...errors },
      },
    },
    '/vms/{name}/clone': {
      parameters: [name],
      post: {
        summary: 'Linked clone (thin overlays; a new identity); running: resumes from the source memory',
        requestBody: { required: true, ...body(CloneBody, 'the clone name') },
        responses: { '201': ok('{vm, source, totalMs}'), ...errors },
      },
    },
  };
}
