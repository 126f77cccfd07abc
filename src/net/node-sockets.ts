/** HostSockets over node:dgram and node:net: the NAT's and the port forwards' way to the host. */
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { createServer, Socket, type Server } from 'node:net';
import {
  HostSocketError,
  type HostSocketErrorCode,
  type HostSockets,
  type HostTcpHandlers,
  type HostTcpSocket,
  type HostUdpHandlers,
} from './host-io.js';

function codeOf(err: unknown): HostSocketErrorCode {
  switch ((err as NodeJS.ErrnoException | undefined)?.code) {
    case 'EADDRINUSE':
      return 'AddressInUse';
    case 'EACCES':
    case 'EPERM':
      return 'PermissionDenied';
    case 'EADDRNOTAVAIL':
    case 'EINVAL':
    case 'ENOTFOUND':
      return 'BadAddress';
    case 'ECONNREFUSED':
      return 'ConnectionRefused';
    case 'ENETUNREACH':
    case 'EHOSTUNREACH':
    case 'ETIMEDOUT':
      return 'Unreachable';
    default:
      return 'Other';
  }
}

export function toHostSocketError(err: unknown): HostSocketError {
  return new HostSocketError(codeOf(err), err instanceof Error ? err.message : String(err));
}

function wrapUdp(sock: DgramSocket, handlers: HostUdpHandlers) {
  let closed = false;
  sock.on('message', (msg, rinfo) => {
    if (!closed) handlers.onMessage(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), rinfo.address, rinfo.port);
  });
  sock.on('error', (err) => {
    if (!closed) handlers.onError?.(toHostSocketError(err));
  });
  return {
    send(data: Uint8Array, port: number, address: string) {
      if (closed) return;
      // dgram copies the bytes synchronously into the send request; errors surface on 'error'.
      sock.send(data, port, address, (err) => {
        if (err && !closed) handlers.onError?.(toHostSocketError(err));
      });
    },
    close() {
      if (closed) return;
      closed = true;
      sock.close();
    },
  };
}

function wrapTcp(sock: Socket, handlers: HostTcpHandlers): HostTcpSocket {
  let failure: HostSocketError | undefined;
  sock.setNoDelay(true);
  sock.on('connect', () => handlers.onConnect?.());
  sock.on('data', (chunk: Buffer) => handlers.onData(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length)));
  sock.on('end', () => handlers.onEnd());
  sock.on('error', (err) => (failure = toHostSocketError(err)));
  sock.on('close', () => handlers.onClose(failure));
  return {
    write(data, done) {
      if (sock.destroyed || sock.writableEnded) return;
      // The endpoint may reuse its buffer after onData returns: hand Node a copy it owns.
      sock.write(Buffer.from(data), () => done());
    },
    end: () => {
      if (!sock.destroyed) sock.end();
    },
    destroy: () => sock.destroy(),
    pause: () => sock.pause(),
    resume: () => sock.resume(),
  };
}

export const nodeHostSockets: HostSockets = {
  udpOpen(handlers) {
    return wrapUdp(createSocket('udp4'), handlers);
  },

  udpListen(address, port, handlers) {
    return new Promise((resolve, reject) => {
      const sock = createSocket('udp4');
      const onError = (err: Error) => {
        sock.close();
        reject(toHostSocketError(err));
      };
      sock.once('error', onError);
      sock.bind(port, address, () => {
        sock.off('error', onError);
        const wrapped = wrapUdp(sock, handlers);
        resolve({ ...wrapped, port: sock.address().port });
      });
    });
  },

  tcpConnect(address, port, handlers) {
    const sock = new Socket();
    const wrapped = wrapTcp(sock, handlers);
    sock.connect({ host: address, port });
    return wrapped;
  },

  tcpListen(address, port, onConnection) {
    return new Promise((resolve, reject) => {
      const server: Server = createServer({ pauseOnConnect: true }, (sock) => {
        onConnection(
          (handlers) => {
            const wrapped = wrapTcp(sock, handlers);
            sock.resume();
            return wrapped;
          },
          sock.remoteAddress ?? '',
          sock.remotePort ?? 0,
        );
      });
      const onError = (err: Error) => reject(toHostSocketError(err));
      server.once('error', onError);
      server.listen({ host: address, port, exclusive: true }, () => {
        server.off('error', onError);
        // A listener error after setup (rare: e.g. EMFILE on accept) must not crash the network's thread.
        server.on('error', () => {});
        const addr = server.address();
        resolve({ port: typeof addr === 'object' && addr ? addr.port : port, close: () => server.close() });
      });
    });
  },
};
