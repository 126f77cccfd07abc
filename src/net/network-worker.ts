/**
 * A network's worker thread: runs one VirtualNetwork, so every frame of the network (switching, the gateway,
 * NAT) is handled here and never on the daemon's event loop. Control requests come on parentPort; frames come
 * on each NIC's own MessagePort, straight from the VM's worker.
 */
import { parentPort, type MessagePort } from 'node:worker_threads';
import { VirtualNetwork, type NicAttachment } from './network.js';
import { nodeHostSockets } from './node-sockets.js';
import { nodeResolver } from './node-resolver.js';
import { nodeClock } from './node-clock.js';
import { connectNicPort, type NicLink } from './frame-port.js';
import { toWireError, type NetworkRequest, type NetworkSpec, type NetworkWorkerMessage } from './network-protocol.js';

const port = parentPort;
if (!port) throw new Error('network-worker.ts runs only as a worker thread');
const post = (msg: NetworkWorkerMessage) => port.postMessage(msg);

interface AttachedNic {
  attachment: NicAttachment;
  link: NicLink;
}

const nics = new Map<string, AttachedNic>();
let net: VirtualNetwork | undefined;

/**
 * The worker starts without a network so the daemon can keep one started ahead of need (a warm pool): loading
 * this module and starting the thread is most of a network's start time. Its first message names the network.
 */
function init(spec: NetworkSpec): void {
  try {
    net = new VirtualNetwork({
      ...spec,
      sockets: nodeHostSockets,
      resolver: nodeResolver,
      clock: nodeClock,
      onLease: (mac, ip) => post({ kind: 'lease', mac, ip }),
    });
    post({ kind: 'ready' });
  } catch (e) {
    post({ kind: 'failed', error: toWireError(e) });
    process.exit(0);
  }
}

function attach(nicId: string, mac: string, hostname: string | undefined, nicPort: MessagePort): void {
  let attachment: NicAttachment | undefined;
  const link = connectNicPort(nicPort, {
    onFrames(frames, offloads) {
      attachment?.receiveBatch(frames, offloads);
    },
    onClose() {
      // The VM side went away (VM stopped or crashed): unplug.
      detach(nicId, link);
    },
  });
  try {
    attachment = net!.attach(nicId, { mac, hostname }, (frame, exclusive, offload) => link.send(frame, exclusive, offload));
  } catch (e) {
    link.close();
    throw e;
  }
  nics.set(nicId, { attachment, link });
}

function detach(nicId: string, only?: NicLink): void {
  const nic = nics.get(nicId);
  if (!nic || (only && nic.link !== only)) return;
  nics.delete(nicId);
  nic.attachment.detach();
  nic.link.close();
}

async function handle(net: VirtualNetwork, req: NetworkRequest): Promise<unknown> {
  switch (req.type) {
    case 'attach-nic':
      attach(req.nicId, req.mac, req.hostname, req.port);
      return null;
    case 'detach-nic':
      detach(req.nicId);
      return null;
    case 'add-forward':
      return await net.addForward(req.spec);
    case 'remove-forward':
      net.removeForward(req.forwardId);
      return null;
    case 'forget-lease':
      net.forgetLease(req.mac);
      return null;
    case 'stats':
      return net.stats();
    case 'leases':
      return net.leases();
    case 'forwards':
      return net.forwards();
    case 'close':
      for (const id of [...nics.keys()]) detach(id);
      net.close();
      // Let the reply go out, then end the thread.
      setImmediate(() => process.exit(0));
      return null;
  }
}

port.on('message', (msg: NetworkRequest | { type: 'init'; spec: NetworkSpec }) => {
  if (msg.type === 'init') {
    if (!net) init(msg.spec);
    return;
  }
  const req = msg;
  if (!net) {
    post({ kind: 'reply', id: req.id, ok: false, error: toWireError(new Error('the network worker has no network yet')) });
    return;
  }
  handle(net, req).then(
    (value) => post({ kind: 'reply', id: req.id, ok: true, value }),
    (e: unknown) => post({ kind: 'reply', id: req.id, ok: false, error: toWireError(e) }),
  );
});
post({ kind: 'idle' });
