/**
 * The API server closes although a console WebSocket request was refused before its upgrade and its client only
 * half-closed the connection. Such a socket has left the HTTP server's connection tracking; before the fix the
 * server's close waited for it forever, and a daemon given SIGTERM never exited (seen in test/web/session.test.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { buildApi } from '../../src/api/server.js';
import type { HostChannel } from '../../src/host/actions.js';
import { HostError } from '../../src/host/errors.js';

test('closing the API ends console requests refused before their upgrade, also half-closed ones', async () => {
  const channel = {
    send: () => Promise.reject(new HostError('VM_NOT_FOUND', 'no such VM')),
  } as unknown as HostChannel;
  const app = await buildApi({ channel, token: 't'.repeat(32) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const answers: string[] = [];
  for (const auth of ['', `authorization: Bearer ${'t'.repeat(32)}\r\n`]) {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(
      'GET /vms/nosuch/console HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n' +
        `sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n${auth}\r\n`,
    );
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    answers.push(chunk.toString('latin1').split('\r\n')[0]!);
    // The client says it is done sending and waits: the server's side stays open unless the server ends it.
    socket.end();
  }
  assert.deepEqual(answers, ['HTTP/1.1 401 Unauthorized', 'HTTP/1.1 404 Not Found']);
  const closed = app.close().then(() => 'closed');
  const timeout = new Promise((r) => setTimeout(() => r('still waiting after 5 s'), 5000).unref());
  assert.equal(await Promise.race([closed, timeout]), 'closed');
});
