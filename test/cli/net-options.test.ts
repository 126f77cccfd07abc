/** The CLI's --nic spelling, including the per-NIC offload switch, and the API schema's matching field. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseNic } from '../../src/cli/net-options.js';
import { UsageError } from '../../src/cli/verb.js';
import { NicBody } from '../../src/api/schemas.js';

test('--nic offload=on|off: off hides the virtio-net offloads, on (the default) adds nothing', () => {
  assert.deepEqual(parseNic('network=default,offload=off'), { network: 'default', offload: false });
  assert.deepEqual(parseNic('network=default,offload=on'), { network: 'default' });
  assert.deepEqual(parseNic('network=lab,mac=52:54:00:00:00:09'), { network: 'lab', mac: '52:54:00:00:00:09' });
  assert.throws(() => parseNic('network=default,offload=maybe'), UsageError);
  assert.throws(() => parseNic('network=default,offloads=off'), UsageError);
});

test('API: nics[].offload is an optional boolean', () => {
  assert.deepEqual(NicBody.parse({ network: 'default', offload: false }), { network: 'default', offload: false });
  assert.equal(NicBody.parse({}).offload, undefined);
  assert.equal(NicBody.safeParse({ offload: 'off' }).success, false);
});
