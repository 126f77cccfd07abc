/**
 * The channel between the daemon and a VM process: one unix socket carrying records
 *
 *   u32 length (big-endian, of what follows) | u8 kind | payload
 *
 * kinds: CONTROL (UTF-8 JSON: protocol.ts requests, replies and events, plus the hello), CONSOLE (raw bytes),
 * NIC (u8 NIC index, then one Ethernet frame) and COUNTERS (the shared-counters.ts layout as float64s). Several
 * records written in one event-loop turn leave in one writev (the socket is corked until setImmediate). Records are
 * parsed with bounded sizes; anything malformed closes the channel with a named ChannelError, never a throw into
 * the caller. Console and NIC records are dropped (and counted) while the peer is not reading, so a stalled peer
 * costs bounded memory; control records always go through.
 */
import type { Socket } from 'node:net';

export const KIND_CONTROL = 1;
export const KIND_CONSOLE = 2;
export const KIND_NIC = 3;
export const KIND_COUNTERS = 4;

/** Largest payload per kind (a control record may carry an exec's 8 MiB stdout and stderr in base64). */
const MAX_PAYLOAD: Record<number, number> = {
  [KIND_CONTROL]: 48 * 1024 * 1024,
  [KIND_CONSOLE]: 1024 * 1024,
  [KIND_NIC]: 1 + 65536,
  [KIND_COUNTERS]: 64 * 1024,
};
/** Bytes waiting in the socket beyond which console and NIC records are dropped. */
const DROP_ABOVE_BYTES = 8 * 1024 * 1024;

export type ChannelErrorCode = 'UnknownKind' | 'RecordTooLarge' | 'EmptyRecord' | 'BadJson' | 'BadNicRecord' | 'BadCounters';

export class ChannelError extends Error {
  constructor(
    readonly code: ChannelErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'ChannelError';
  }
}

export interface ChannelHandlers {
  control(msg: Record<string, unknown>): void;
  console(bytes: Uint8Array): void;
  nic(index: number, frame: Uint8Array): void;
  counters(values: Float64Array): void;
  /** The socket closed (error is set when a malformed record or a socket error closed it). */
  close(error?: Error): void;
}

export interface ChannelCounters {
  droppedConsoleBytes: number;
  droppedFrames: number;
}

/** JSON with Uint8Arrays as {"$b64": "..."} (exec input and output). */
export function encodeControl(msg: object): Buffer {
  return Buffer.from(
    JSON.stringify(msg, function (this: Record<string, unknown>, key: string, value: unknown) {
      const raw = this[key];
      if (raw instanceof Uint8Array) return { $b64: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') };
      return value;
    }),
  );
}

export function decodeControl(bytes: Uint8Array): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'), (_k, value: unknown) => {
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
        const o = value as Record<string, unknown>;
        const keys = Object.keys(o);
        if (keys.length === 1 && keys[0] === '$b64' && typeof o.$b64 === 'string')
          return new Uint8Array(Buffer.from(o.$b64, 'base64'));
      }
      return value;
    });
  } catch (err) {
    throw new ChannelError('BadJson', (err as Error).message);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v) || typeof (v as { type?: unknown }).type !== 'string')
    throw new ChannelError('BadJson', 'a control record is not an object with a type');
  return v as Record<string, unknown>;
}

export class ProcessChannel {
  readonly counters: ChannelCounters = { droppedConsoleBytes: 0, droppedFrames: 0 };
  private pending: Buffer | undefined;
  private corked = false;
  private closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly handlers: ChannelHandlers,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail());
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  sendControl(msg: object): void {
    this.write(KIND_CONTROL, encodeControl(msg));
  }

  sendConsole(bytes: Uint8Array): void {
    if (this.backlogged()) {
      this.counters.droppedConsoleBytes += bytes.length;
      return;
    }
    this.write(KIND_CONSOLE, bytes);
  }

  sendNic(index: number, frame: Uint8Array): void {
    if (this.closed) return;
    if (this.backlogged() || frame.length > 65536) {
      this.counters.droppedFrames++;
      return;
    }
    const head = Buffer.allocUnsafe(6);
    head.writeUInt32BE(frame.length + 2, 0);
    head[4] = KIND_NIC;
    head[5] = index;
    this.cork();
    this.socket.write(head);
    this.socket.write(frame);
  }

  sendCounters(values: Float64Array): void {
    if (this.backlogged()) return;
    this.write(KIND_COUNTERS, new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice());
  }

  /** Sends what is queued now. */
  flush(): void {
    if (this.corked) {
      this.corked = false;
      this.socket.uncork();
    }
  }

  /** Ends the channel once queued records are written; `done` runs when the socket is closed. */
  end(done?: () => void): void {
    this.flush();
    if (this.closed) {
      done?.();
      return;
    }
    if (done) this.socket.once('close', done);
    this.socket.end();
  }

  /** Closes at once, dropping what is queued. */
  destroy(): void {
    this.socket.destroy();
  }

  private backlogged(): boolean {
    return this.closed || this.socket.writableLength > DROP_ABOVE_BYTES;
  }

  private write(kind: number, payload: Uint8Array): void {
    if (this.closed) return;
    const head = Buffer.allocUnsafe(5);
    head.writeUInt32BE(payload.length + 1, 0);
    head[4] = kind;
    this.cork();
    this.socket.write(head);
    if (payload.length) this.socket.write(payload);
  }

  private cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    setImmediate(() => this.flush());
  }

  private fail(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = undefined;
    if (err) this.socket.destroy();
    this.handlers.close(err);
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    let off = 0;
    try {
      while (buf.length - off >= 5) {
        const len = buf.readUInt32BE(off);
        const kind = buf[off + 4]!;
        const max = MAX_PAYLOAD[kind];
        if (max === undefined) throw new ChannelError('UnknownKind', `record kind ${kind}`);
        if (len < 1) throw new ChannelError('EmptyRecord', 'a record without its kind');
        if (len - 1 > max) throw new ChannelError('RecordTooLarge', `a kind ${kind} record of ${len - 1} bytes`);
        if (buf.length - off < 4 + len) break;
        const payload = buf.subarray(off + 5, off + 4 + len);
        off += 4 + len;
        this.dispatch(kind, payload);
        if (this.closed) return;
      }
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (off < buf.length) {
      // Keep the partial record in a buffer of its own, not a view pinning the whole chunk.
      buf = buf.subarray(off);
      this.pending = off > 0 || buf !== chunk ? Buffer.from(buf) : buf;
    }
  }

  private dispatch(kind: number, payload: Buffer): void {
    switch (kind) {
      case KIND_CONTROL:
        this.handlers.control(decodeControl(payload));
        return;
      case KIND_CONSOLE:
        this.handlers.console(new Uint8Array(payload));
        return;
      case KIND_NIC: {
        if (payload.length < 1) throw new ChannelError('BadNicRecord', 'a NIC record without its index');
        // A copy that owns its buffer, so the receiver may transfer it onwards.
        const frame = new Uint8Array(payload.length - 1);
        frame.set(payload.subarray(1));
        this.handlers.nic(payload[0]!, frame);
        return;
      }
      case KIND_COUNTERS: {
        if (payload.length % 8 !== 0) throw new ChannelError('BadCounters', `${payload.length} bytes is no float64 array`);
        const values = new Float64Array(payload.length / 8);
        new Uint8Array(values.buffer).set(payload);
        this.handlers.counters(values);
        return;
      }
    }
  }
}
