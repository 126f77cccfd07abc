/**
 * NIC offloads in process mode, with real Linux guests through the daemon: each VM's frames cross its VM process's
 * socket (src/vm/process-channel.ts) with their offload metadata, so a process-mode NIC offers and negotiates the
 * same checksum and TSO4 offloads as a worker's (the guest's sysfs feature string shows them), and a VM → VM
 * transfer arrives byte-exact (sha256 at both ends) in TCP super-segments: the receiving device took frames larger
 * than the MTU, which only a frame that kept its GSO metadata across both VM processes' channels can be.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  VIRTIO_NET_F_CSUM,
  VIRTIO_NET_F_GUEST_CSUM,
  VIRTIO_NET_F_GUEST_TSO4,
  VIRTIO_NET_F_HOST_TSO4,
} from '../../src/devices/virtio/net.js';
import { removeHome, vmProcesses } from '../host/daemon-harness.js';
import { GuestDaemon } from './daemon-guests.js';

let g: GuestDaemon;
const MIB = 16;

before(async () => {
  g = await GuestDaemon.start({ vmMode: 'process' });
});
after(async () => {
  await g.d.stop();
  removeHome(g.d.home);
});

test(
  `process mode: both VMs negotiate checksum and TSO4 offloads; ${MIB} MiB VM → VM arrive byte-exact in super-segments`,
  { timeout: 1_200_000 },
  async (t) => {
    for (const vm of ['offa', 'offb']) await g.create(vm, '--memory', '192');
    assert.deepEqual(
      vmProcesses(g.d.home)
        .map((p) => p.name)
        .sort(),
      ['offa', 'offb'],
      'each VM runs in a process of its own',
    );
    const [, ipB] = await Promise.all([g.bootWithAddress('offa'), g.bootWithAddress('offb')]);
    for (const vm of ['offa', 'offb']) {
      const features = (await g.guest(vm, 'cat /sys/class/net/eth0/device/features')).trim();
      for (const bit of [VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_GUEST_TSO4])
        assert.equal(features[bit], '1', `${vm}: offload feature bit ${bit} in ${features}`);
    }

    await g.guest('offa', `head -c ${MIB * 1048576} /dev/urandom > /tmp/blob && sha256sum /tmp/blob > /tmp/blob.sum`);
    await g.guest('offb', 'nc -l -p 5001 > /tmp/blob </dev/null 2>/dev/null & echo $! > /tmp/nc.pid');
    const before = (await g.vm('offb')).stats;
    const t0 = Date.now();
    await g.guest('offa', `nc ${ipB} 5001 < /tmp/blob`, 600);
    await g.guest('offb', 'while kill -0 $(cat /tmp/nc.pid) 2>/dev/null; do sleep 0.2; done', 120);
    const seconds = (Date.now() - t0) / 1000;
    t.diagnostic(`${MIB} MiB VM→VM in ${seconds.toFixed(1)} s (${(MIB / seconds).toFixed(2)} MiB/s)`);
    const sent = (await g.guest('offa', 'cat /tmp/blob.sum')).split(/\s+/)[0];
    const received = (await g.guest('offb', 'sha256sum /tmp/blob')).split(/\s+/)[0];
    assert.match(sent!, /^[0-9a-f]{64}$/);
    assert.equal(received, sent);

    const after = (
      await g.d.client.json<{ stats: { nics: { rxBytes: number; rxPackets: number }[] } }>('GET', '/vms/offb?stats=true')
    ).stats.nics[0]!;
    const rxBytes = after.rxBytes - (before?.nics[0]?.rxBytes ?? 0);
    const rxPackets = after.rxPackets - (before?.nics[0]?.rxPackets ?? 0);
    const average = rxBytes / rxPackets;
    t.diagnostic(`offb received ${rxPackets} frames, ${average.toFixed(0)} bytes on average`);
    assert.ok(rxBytes > MIB * 1048576, `offb rx ${rxBytes} bytes`);
    assert.ok(
      average > 1514,
      `frames larger than the MTU reached offb (average ${average.toFixed(0)} bytes): TSO super-segments`,
    );
  },
);
