/**
 * Fuzz: hostile request bodies, paths and query strings against the real API server (fastify + zod, in
 * process through inject) with a host channel that records what reaches it. Every answer is a 2xx or a 4xx with
 * a known error code (never a 500), and only bodies the schemas accept reach the host layer, typed.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../src/api/server.js';
import { ERROR_CODES } from '../../src/api/schemas.js';
import type { HostAction, HostChannel } from '../../src/host/actions.js';
import { HostError } from '../../src/host/errors.js';
import { fuzzParams } from '../helpers/fuzz.js';

const reached: HostAction[] = [];
const channel: HostChannel = {
  send(action: HostAction) {
    reached.push(action);
    return Promise.reject(new HostError('VM_NOT_FOUND', 'the fuzz channel knows no VMs'));
  },
} as HostChannel;
let app: FastifyInstance;

before(async () => {
  app = await buildApi({ channel });
});
after(async () => {
  await app.close();
});

const jsonValue = fc.jsonValue({ maxDepth: 4 });
const hostile = fc.oneof(
  jsonValue,
  fc.record(
    {
      name: fc.oneof(fc.string(), fc.constantFrom('web', '../etc', 'a/b', '', 'x'.repeat(300))),
      vcpus: fc.oneof(fc.integer(), fc.double(), fc.string()),
      memoryMiB: fc.oneof(fc.integer(), fc.double(), fc.constant(1e308)),
      kernel: fc.oneof(fc.string(), fc.constantFrom('/etc/shadow', '/tmp/../etc/passwd', 'rel/path')),
      firmware: fc.oneof(fc.string(), fc.constantFrom('builtin', 'none')),
      kernelFormat: fc.oneof(fc.string(), fc.constantFrom('auto', 'raw')),
      disks: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 8 }),
      cmdline: fc.string({ maxLength: 5000 }),
      timeoutSeconds: fc.oneof(fc.integer(), fc.string()),
      balloonTargetMiB: fc.oneof(fc.integer(), fc.double()),
      __proto__: jsonValue,
      constructor: jsonValue,
    },
    { requiredKeys: [] },
  ),
);
const route = fc.constantFrom(
  ['POST', '/vms'],
  ['PATCH', '/vms/web'],
  ['POST', '/vms/web/actions/start'],
  ['POST', '/vms/web/actions/shutdown'],
  ['POST', '/vms/web/actions/fly'],
  ['DELETE', '/vms/web?force=maybe'],
  ['GET', '/vms?stats=yes'],
  ['POST', '/vms/..%2F..%2Fetc/actions/stop'],
) as fc.Arbitrary<[string, string]>;

test('fuzz: hostile JSON bodies on every route get a 2xx/4xx with a known code, never a 500', async () => {
  await fc.assert(
    fc.asyncProperty(route, hostile, fc.boolean(), async ([method, url], body, raw) => {
      reached.length = 0;
      const payload = raw ? JSON.stringify(body).slice(0, -1) : JSON.stringify(body); // raw: truncated JSON
      const r = await app.inject({ method: method as 'POST', url, payload, headers: { 'content-type': 'application/json' } });
      assert.ok(r.statusCode < 500, `${method} ${url} ${payload.slice(0, 200)} → ${r.statusCode} ${r.body.slice(0, 300)}`);
      if (r.statusCode >= 400) {
        const parsed = JSON.parse(r.body) as { error: { code: string; message: string } };
        assert.ok((ERROR_CODES as readonly string[]).includes(parsed.error.code), parsed.error.code);
        assert.ok(parsed.error.message.length > 0);
      }
      for (const a of reached) {
        if (a.type === 'create') {
          assert.equal(typeof a.spec.name, 'string');
          assert.ok(Number.isInteger(a.spec.vcpus) && Number.isInteger(a.spec.memoryMiB));
        }
      }
    }),
    fuzzParams(500, 0xa91),
  );
  // A valid body does reach the host layer, typed and with the schema's defaults filled in.
  reached.length = 0;
  const ok = await app.inject({ method: 'POST', url: '/vms', payload: { name: 'web', kernel: '/k' } });
  assert.equal(ok.statusCode, 404);
  assert.deepEqual(reached.length, 1);
  const a = reached[0]!;
  assert.ok(a.type === 'create' && a.spec.vcpus === 1 && a.spec.memoryMiB === 256 && a.spec.kernelFormat === 'auto');
});

test('fuzz: arbitrary bytes as a body and arbitrary content types', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 2048 }),
      fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16'),
      async (bytes, type) => {
        const r = await app.inject({
          method: 'POST',
          url: '/vms',
          payload: Buffer.from(bytes),
          headers: { 'content-type': type },
        });
        assert.ok(r.statusCode >= 400 && r.statusCode < 500, `${r.statusCode} ${r.body.slice(0, 200)}`);
        assert.ok((ERROR_CODES as readonly string[]).includes((JSON.parse(r.body) as { error: { code: string } }).error.code));
      },
    ),
    fuzzParams(300, 0xb0d1),
  );
});
