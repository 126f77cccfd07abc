/**
 * The guest-side shell of bench/net, the same text for typevisor (run through the guest agent's exec) and for
 * qemu (typed on its serial console), so both hypervisors' guests do exactly the same work.
 */

/** Sends `bytes` of zeros to host:port with busybox nc. */
export const sendScript = (host: string, port: number, bytes: number): string =>
  `dd if=/dev/zero bs=65536 count=${bytes / 65536} 2>/dev/null | nc ${host} ${port}`;

/**
 * Receives one TCP connection on `port` and prints `RECV <bytes after the first> <uptime at the first byte>
 * <uptime at EOF>`. The receiving guest times the transfer on its own clock (both hypervisors run the guest clock
 * in real time), from its first byte to its last, so neither the NAT's buffering ahead of the guest nor the
 * host's latency in hearing about the end counts. /proc/uptime is read by the shell's `read` builtin (no fork,
 * 10 ms resolution: transfers here take seconds). The bytes are counted by dd in 64 KiB reads (busybox wc -c
 * would take a getc() per byte, guest work that would count against the network); its third status line starts
 * with the byte count, in busybox and coreutils alike.
 */
export const receiveScript = (port: number): string =>
  `nc -l -p ${port} </dev/null 2>/dev/null | { dd bs=1 count=1 of=/dev/null 2>/dev/null; read a _ </proc/uptime; ` +
  `dd bs=65536 of=/dev/null 2>/tmp/dd.${port}; read b _ </proc/uptime; ` +
  `echo "RECV $(sed -n '3s/ .*//p' /tmp/dd.${port}) $a $b"; }`;

/** Returns once something listens on TCP `port` in the guest. */
export const listeningScript = (port: number): string => `until netstat -tln | grep -q ':${port} '; do usleep 50000; done`;

export interface Receipt {
  /** Bytes the guest received in all. */
  bytes: number;
  /** Guest seconds from the first byte to the last. */
  seconds: number;
}

export class ReceiptError extends Error {
  constructor(message: string, output: string) {
    super(`${message}; guest output:\n${output.slice(-2000)}`);
    this.name = 'ReceiptError';
  }
}

/** Parses receiveScript's report and checks that every byte arrived. */
export function parseReceipt(output: string, expectedBytes: number): Receipt {
  const m = /RECV (\d+) (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)/.exec(output);
  if (!m) throw new ReceiptError('no RECV line', output);
  const bytes = Number(m[1]) + 1;
  const seconds = Number(m[3]) - Number(m[2]);
  if (bytes !== expectedBytes) throw new ReceiptError(`received ${bytes} bytes, expected ${expectedBytes}`, output);
  if (!(seconds >= 0.1)) throw new ReceiptError(`transfer took ${seconds} s: too short for /proc/uptime`, output);
  return { bytes, seconds };
}

/** busybox ping's average round trip in ms. */
export function pingAverageMs(output: string): number {
  const m = /min\/avg\/max = [\d.]+\/([\d.]+)\//.exec(output);
  if (!m) throw new ReceiptError('no ping summary', output);
  return Number(m[1]);
}
