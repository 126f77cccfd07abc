/**
 * The channel between the daemon and a VM process: one unix socket carrying records
 *
 *   u32 length (big-endian, of what follows) | u8 kind | payload
 *
 * kinds: CONTROL (UTF-8 JSON: protocol.ts requests, replies and events, plus the hello), CONSOLE (raw bytes),
 * NIC (u8 NIC index, then one Ethernet frame), NIC_OFFLOAD (u8 NIC index, the frame's offload metadata as five
 * u16 — flags, gso type, gso size, csum start, csum offset — then the frame: src/net/packet/offload.ts) and
 * COUNTERS (the shared-counters.ts layout as float64s). Several
 * records written in one event-loop turn leave in one writev (the socket is corked until setImmediate). Records are
 * parsed with bounded sizes; anything malformed closes the channel with a named ChannelError, never a throw into
 * the caller. Console and NIC records are dropped (and counted) while the peer is not reading, so a stalled peer
 * costs bounded memory; control records always go through.
 */
import type { Socket } from 'node:net';
import {
  MAX_GSO_FRAME_BYTES,
  MIN_GSO_SIZE,
  OFFLOAD_F_DATA_VALID,
  OFFLOAD_F_NEEDS_CSUM,
  OFFLOAD_GSO_NONE,
  OFFLOAD_GSO_TCPV4,
  type FrameOffload,
} from '../net/packet/offload.js';

export const KIND_CONTROL = 1;
export const KIND_CONSOLE = 2;
export const KIND_NIC = 3;
export const KIND_COUNTERS = 4;
/** A frame with checksum/segmentation offload metadata; frames without any keep the plain NIC kind. */
export const KIND_NIC_OFFLOAD = 5;
/** The offload header of a NIC_OFFLOAD record: flags, gso type, gso size, csum start, csum offset (u16 each). */
const OFFLOAD_HEADER_BYTES = 10;
/** Largest frame either NIC kind carries: a 64 KiB GSO super-segment with its Ethernet header. */
const MAX_NIC_FRAME_BYTES = MAX_GSO_FRAME_BYTES;

/** Largest payload per kind (a control record may carry an exec's 8 MiB stdout and stderr in base64). */
const MAX_PAYLOAD: Record<number, number> = {
  [KIND_CONTROL]: 48 * 1024 * 1024,
  [KIND_CONSOLE]: 1024 * 1024,
  [KIND_NIC]: 1 + MAX_NIC_FRAME_BYTES,
  [KIND_COUNTERS]: 64 * 1024,
  [KIND_NIC_OFFLOAD]: 1 + OFFLOAD_HEADER_BYTES + MAX_NIC_FRAME_BYTES,
};
/** Bytes waiting in the socket beyond which console and NIC records are dropped. */
const DROP_ABOVE_BYTES = 8 * 1024 * 1024;

export type ChannelErrorCode =
  'UnknownKind' | 'RecordTooLarge' | 'EmptyRecord' | 'BadJson' | 'BadNicRecord' | 'BadNicOffload' | 'BadCounters';

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
  /** `offload`: the frame's checksum/segmentation metadata, structurally valid (checked against the frame later). */
  nic(index: number, frame: Uint8Array, offload?: FrameOffload): void;
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

  /**
   * Control records leave at once, with whatever was queued before them: a reply must not wait for the next
   * setImmediate, which a VM process's run loop can hold back by a slice of guest code (a restore's reply waited
   * 80-100 ms for the first slices of a restored guest).
   */
  sendControl(msg: object): void {
    this.write(KIND_CONTROL, encodeControl(msg));
    this.flush();
  }

  sendConsole(bytes: Uint8Array): void {
    if (this.backlogged()) {
      this.counters.droppedConsoleBytes += bytes.length;
      return;
    }
    this.write(KIND_CONSOLE, bytes);
  }

  sendNic(index: number, frame: Uint8Array, offload?: FrameOffload): void {
    if (this.closed) return;
    if (this.backlogged() || frame.length > MAX_NIC_FRAME_BYTES) {
      this.counters.droppedFrames++;
      return;
    }
    const extra = offload ? OFFLOAD_HEADER_BYTES : 0;
    const head = Buffer.allocUnsafe(6 + extra);
    head.writeUInt32BE(frame.length + 2 + extra, 0);
    head[4] = offload ? KIND_NIC_OFFLOAD : KIND_NIC;
    head[5] = index;
    if (offload) {
      head.writeUInt16BE(offload.flags, 6);
      head.writeUInt16BE(offload.gsoType, 8);
      head.writeUInt16BE(offload.gsoSize, 10);
      head.writeUInt16BE(offload.csumStart, 12);
      head.writeUInt16BE(offload.csumOffset, 14);
    }
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
      case KIND_NIC_OFFLOAD: {
        const start = 1 + OFFLOAD_HEADER_BYTES;
        if (payload.length < start)
          throw new ChannelError('BadNicRecord', `a NIC offload record of ${payload.length} bytes (its header needs ${start})`);
        const offload = parseOffload(payload);
        const frame = new Uint8Array(payload.length - start);
        frame.set(payload.subarray(start));
        this.handlers.nic(payload[0]!, frame, offload);
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

const KNOWN_OFFLOAD_FLAGS = OFFLOAD_F_NEEDS_CSUM | OFFLOAD_F_DATA_VALID;

/**
 * The offload header of a NIC_OFFLOAD record (after the NIC index), as typed values. What can be judged without the
 * frame is judged here (flags and GSO type we know, a GSO size the segmenter accepts); whether it fits its frame is
 * the receiver's check (the switch, the virtio-net device: checkOffload).
 */
function parseOffload(payload: Buffer): FrameOffload {
  const flags = payload.readUInt16BE(1);
  const gsoType = payload.readUInt16BE(3);
  const gsoSize = payload.readUInt16BE(5);
  const csumStart = payload.readUInt16BE(7);
  const csumOffset = payload.readUInt16BE(9);
  if ((flags & ~KNOWN_OFFLOAD_FLAGS) !== 0) throw new ChannelError('BadNicOffload', `offload flags 0x${flags.toString(16)}`);
  if (gsoType !== OFFLOAD_GSO_NONE && gsoType !== OFFLOAD_GSO_TCPV4)
    throw new ChannelError('BadNicOffload', `GSO type ${gsoType}`);
  if (gsoType === OFFLOAD_GSO_TCPV4 && gsoSize < MIN_GSO_SIZE)
    throw new ChannelError('BadNicOffload', `GSO size ${gsoSize} (at least ${MIN_GSO_SIZE})`);
  return { flags, gsoType, gsoSize, csumStart, csumOffset };
}
