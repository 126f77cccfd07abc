/** The OpenAPI 3.1 document served at /openapi.json, generated from the zod schemas the handlers validate with. */
import { z } from 'zod';
import {
  ActionBody,
  ActionOutcomeSchema,
  CreateVmBody,
  DeletedSchema,
  ErrorSchema,
  HostInfoSchema,
  UpdateVmBody,
  VmListSchema,
  VmViewSchema,
} from './schemas.js';
import { VM_ACTIONS } from '../host/actions.js';
import { snapshotOpenApiPaths } from './snapshot-routes.js';

function schema(s: z.ZodType, io: 'input' | 'output' = 'output'): Record<string, unknown> {
  const out = z.toJSONSchema(s, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  delete out.$schema;
  return out;
}

const json = (s: z.ZodType, description: string, io: 'input' | 'output' = 'output') => ({
  description,
  content: { 'application/json': { schema: schema(s, io) } },
});
const errorResponse = (description: string) => json(ErrorSchema, description);
const nameParam = { name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' } };

export function openApiDocument(): Record<string, unknown> {
  const vmErrors = { '400': errorResponse('invalid name'), '404': errorResponse('no such VM') };
  return {
    openapi: '3.1.0',
    info: {
      title: 'typevisor',
      version: '0.1.0',
      description:
        'Manage typevisor VMs. Over the unix socket no credentials are needed; over TCP send `Authorization: Bearer <token>` (the token file in the daemon home). Every error is `{ error: { code, message } }`.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    },
    security: [{ bearer: [] }, {}],
    paths: {
      '/vms': {
        get: {
          summary: 'List VMs',
          parameters: [
            {
              name: 'stats',
              in: 'query',
              description: 'include live stats',
              schema: { type: 'string', enum: ['true', 'false', '1', '0'] },
            },
          ],
          responses: { '200': json(VmListSchema, 'every VM (stats null unless stats=true)') },
        },
        post: {
          summary: 'Create a VM (state defined)',
          requestBody: { required: true, ...json(CreateVmBody, 'the new VM', 'input') },
          responses: {
            '201': json(VmViewSchema, 'created'),
            '400': errorResponse('invalid body'),
            '404': errorResponse('unknown image'),
            '409': errorResponse('a VM with that name exists'),
          },
        },
      },
      '/vms/{name}': {
        parameters: [nameParam],
        get: { summary: 'A VM: config, state and live stats', responses: { '200': json(VmViewSchema, 'the VM'), ...vmErrors } },
        patch: {
          summary: 'Change a VM (machine fields only while it is not running)',
          requestBody: { required: true, ...json(UpdateVmBody, 'fields to change', 'input') },
          responses: { '200': json(VmViewSchema, 'the updated VM'), ...vmErrors, '409': errorResponse('wrong state') },
        },
        delete: {
          summary: 'Delete a VM and its files (only when stopped, unless force=true)',
          parameters: [{ name: 'force', in: 'query', schema: { type: 'string', enum: ['true', 'false', '1', '0'] } }],
          responses: { '200': json(DeletedSchema, 'deleted'), ...vmErrors, '409': errorResponse('wrong state') },
        },
      },
      '/vms/{name}/actions/{action}': {
        parameters: [
          nameParam,
          { name: 'action', in: 'path', required: true, schema: { type: 'string', enum: [...VM_ACTIONS] } },
        ],
        post: {
          summary: 'start, shutdown (graceful, forced after timeoutSeconds), stop (forced), pause, resume, reboot',
          requestBody: { required: false, ...json(ActionBody, 'options', 'input') },
          responses: {
            '200': json(ActionOutcomeSchema, 'the VM after the action'),
            ...vmErrors,
            '409': errorResponse('wrong state'),
          },
        },
      },
      '/vms/{name}/console': {
        parameters: [nameParam],
        get: {
          summary: 'WebSocket: raw console bytes both ways; several viewers may attach at once',
          responses: { '101': { description: 'switching protocols' }, ...vmErrors },
        },
      },
      '/vms/{name}/console.log': {
        parameters: [nameParam],
        get: {
          summary: 'The retained console output',
          responses: { '200': { description: 'bytes', content: { 'text/plain': { schema: { type: 'string' } } } }, ...vmErrors },
        },
      },
      '/host': {
        get: { summary: 'Host cores, memory, VMs and usage', responses: { '200': json(HostInfoSchema, 'host information') } },
      },
      '/metrics': {
        get: {
          summary: 'Prometheus text exposition of host and per-VM figures',
          responses: { '200': { description: 'metrics', content: { 'text/plain': { schema: { type: 'string' } } } } },
        },
      },
      '/openapi.json': { get: { summary: 'This document', responses: { '200': { description: 'OpenAPI 3.1' } } } },
      ...snapshotOpenApiPaths(),
    },
  };
}
