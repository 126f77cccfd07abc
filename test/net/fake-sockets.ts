import type { HostSockets, HostTcpHandlers, HostUdpHandlers } from '../../src/net/host-io.js';

/** Host sockets that go nowhere: they record what the network asked for, for hostile-input tests. */
export class FakeSockets implements HostSockets {
  udpSent = 0;
  udpOpened = 0;
  udpClosed = 0;
  tcpConnects: { address: string; port: number; handlers: HostTcpHandlers; destroyed: boolean }[] = [];
  udpHandlers: HostUdpHandlers[] = [];
  /** When set, host connects succeed (asynchronously, as real ones do). */
  constructor(private readonly autoConnect = false) {}

  udpOpen(handlers: HostUdpHandlers) {
    this.udpOpened++;
    this.udpHandlers.push(handlers);
    return {
      send: () => void this.udpSent++,
      close: () => void this.udpClosed++,
    };
  }
  udpListen(): never {
    throw new Error('not in this test');
  }
  tcpConnect(address: string, port: number, handlers: HostTcpHandlers) {
    const rec = { address, port, handlers, destroyed: false };
    this.tcpConnects.push(rec);
    if (this.autoConnect) queueMicrotask(() => handlers.onConnect?.());
    return {
      write: () => {},
      end: () => {},
      destroy: () => void (rec.destroyed = true),
      pause: () => {},
      resume: () => {},
    };
  }
  tcpListen(): never {
    throw new Error('not in this test');
  }
}
