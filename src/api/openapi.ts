/** The OpenAPI 3.1 document served at /openapi.json, generated from the zod schemas the handlers validate with. */
import { z } from 'zod';
import {
  ActionBody,
  ActionOutcomeSchema,
  CreateNetworkBody,
  CreateVmBody,
  DeletedSchema,
  NetworkViewSchema,
  ErrorSchema,
  ExecBody,
  ExecResultSchema,
  HostInfoSchema,
  UpdateVmBody,
  VmListSchema,
  VmViewSchema,
} from './schemas.js';
import { VM_ACTIONS } from '../host/actions.js';
import { LoginBody, SessionSchema } from './web.js';
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

const historyParam = {
  name: 'history',
  in: 'query',
  description: "seconds of history, 1-900, or 'all' (default)",
  schema: { type: 'string', pattern: '^(all|\\d{1,4})$' },
};

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
            '403': errorResponse('a kernel/initrd/firmware path outside the allowed directories'),
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
          summary:
            'start, shutdown (graceful, forced after timeoutSeconds), stop (forced), pause, resume, reboot (a reset; graceful: through the guest agent, reset after timeoutSeconds)',
          requestBody: { required: false, ...json(ActionBody, 'options', 'input') },
          responses: {
            '200': json(ActionOutcomeSchema, 'the VM after the action'),
            ...vmErrors,
            '403': errorResponse('start: a boot file now lies outside the allowed directories'),
            '409': errorResponse('wrong state'),
          },
        },
      },
      '/vms/{name}/exec': {
        parameters: [nameParam],
        post: {
          summary:
            'Run a command in a running VM through its guest agent; answers once it exits. Output is kept up to 8 MiB per stream (truncated says when cut). The body may be up to 32 MiB.',
          requestBody: { required: true, ...json(ExecBody, 'the command', 'input') },
          responses: {
            '200': json(ExecResultSchema, 'the command ran (whatever its exit status)'),
            '400': errorResponse('invalid body, or cwd is not a directory in the guest'),
            '404': errorResponse('no such VM'),
            '409': errorResponse('the VM is not running, has no guest agent channel, or stopped/rebooted during the command'),
            '413': errorResponse('body above 32 MiB'),
            '504': errorResponse('the command did not finish within timeoutMs (it was killed), or the agent did not answer'),
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
      '/vms/{name}/stats': {
        parameters: [nameParam, historyParam],
        get: {
          summary: "The VM's monitoring history: one sample a second (CPU, steal, instructions/s, memory, disk and net rates)",
          responses: { '200': { description: '{ name, intervalSeconds, samples[] } oldest first' }, ...vmErrors },
        },
      },
      '/host/stats': {
        parameters: [historyParam],
        get: {
          summary: "The host's monitoring history: CPU, idle cores, the VMs' CPU and steal, memory, disk and net rates",
          responses: { '200': { description: '{ intervalSeconds, samples[] } oldest first' } },
        },
      },
      '/events': {
        get: {
          summary:
            'Server-Sent Events: state changes, settings changes and policy actions, each with its reason (follow=false: the recent ones as JSON)',
          parameters: [
            { name: 'follow', in: 'query', schema: { type: 'string', enum: ['true', 'false', '1', '0'] } },
            {
              name: 'after',
              in: 'query',
              description: 'only events after this id (or the Last-Event-ID header)',
              schema: { type: 'string' },
            },
            { name: 'vm', in: 'query', description: 'only this VM', schema: { type: 'string' } },
          ],
          responses: {
            '200': {
              description: 'text/event-stream (id, event: <type>, data: <JSON event>), or { events[] }',
              content: { 'text/event-stream': { schema: { type: 'string' } } },
            },
          },
        },
      },
      '/networks': {
        get: {
          summary: 'List virtual networks',
          responses: { '200': json(z.object({ networks: z.array(NetworkViewSchema) }), 'every network') },
        },
        post: {
          summary: 'Create a virtual network (nat: switch + user-mode NAT gateway; isolated: switch + DHCP/DNS only)',
          requestBody: { required: true, ...json(CreateNetworkBody, 'the new network', 'input') },
          responses: {
            '201': json(NetworkViewSchema, 'created'),
            '400': errorResponse('invalid body, subnet or overlap'),
            '409': errorResponse('a network with that name exists'),
          },
        },
      },
      '/networks/{name}': {
        parameters: [nameParam],
        get: {
          summary: 'A network: subnet, leases, live counters',
          responses: { '200': json(NetworkViewSchema, 'the network'), '404': errorResponse('no such network') },
        },
        delete: {
          summary: "Remove a network (refused while a VM has a NIC on it, and for 'default')",
          responses: {
            '200': json(DeletedSchema, 'deleted'),
            '404': errorResponse('no such network'),
            '409': errorResponse('in use'),
          },
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
      '/session': {
        get: {
          summary: "The browser session of this cookie (the web console's CSRF token after a reload)",
          security: [],
          responses: { '200': json(SessionSchema, 'logged in'), '401': errorResponse('no session') },
        },
        post: {
          summary: 'Log a browser in: sets the HttpOnly, SameSite=Strict tv_session cookie',
          security: [],
          requestBody: { required: true, content: { 'application/json': { schema: schema(LoginBody, 'input') } } },
          responses: {
            '200': json(SessionSchema, 'logged in'),
            '401': errorResponse('wrong token'),
            '403': errorResponse('cross-origin'),
          },
        },
        delete: { summary: 'Log out (needs X-CSRF-Token)', responses: { '200': { description: 'logged out' } } },
      },
      ...snapshotOpenApiPaths(),
    },
  };
}
