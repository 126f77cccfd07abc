/**
 * The host side of the guest agent protocol (docs/architecture.md, "Guest agent protocol"): requests go out as
 * lines on the agent's virtio-console port, replies come back as lines. The guest is untrusted: its byte stream
 * is cut into bounded lines and each line is parsed into a typed reply or a named error, and nothing it sends
 * can throw into the host or grow memory without bound. Requests carry ids, so any number may be in flight.
 */

/** Bytes of stdout and of stderr the agent keeps per command (the rest is dropped and reported as truncated). */
export const EXEC_OUTPUT_CAP = 8 * 1024 * 1024;
/** Largest stdin an exec may carry. */
export const EXEC_STDIN_CAP = 8 * 1024 * 1024;
/** Raw bytes per request body line: 3072 base64 characters, well under the guest tty's 4095-byte line limit. */
export const BODY_LINE_BYTES = 2304;
const base64Length = (n: number) => Math.ceil(n / 3) * 4;
/** The longest reply line: an exec-result with both outputs at the cap, plus the small fields. */
export const MAX_REPLY_LINE = 2 * base64Length(EXEC_OUTPUT_CAP) + 256;
/** Ids the agent accepts: [0-9A-Za-z_-]{1,32}. */
const ID_RE = /^[0-9A-Za-z_-]{1,32}$/;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

// ---- replies ------------------------------------------------------------------------------------------------

export type AgentReply =
  | { kind: 'ready' }
  | { kind: 'pong'; id: string | undefined }
  | { kind: 'ok'; what: 'shutdown' | 'reboot' }
  | { kind: 'error'; id: string | undefined; reason: string }
  | {
      kind: 'exec-result';
      id: string;
      status: number;
      truncated: { stdout: boolean; stderr: boolean };
      stdout: Uint8Array;
      stderr: Uint8Array;
    };

/** A line from the guest that is not a valid reply. Subclasses name what was wrong. */
export class AgentProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
export class AgentLineTooLongError extends AgentProtocolError {
  constructor(readonly limit: number) {
    super(`a guest agent line exceeded ${limit} bytes; it was dropped`);
  }
}
export class UnknownAgentReplyError extends AgentProtocolError {
  constructor(readonly word: string) {
    super(`unknown guest agent reply ${JSON.stringify(word.slice(0, 40))}`);
  }
}
export class MalformedAgentReplyError extends AgentProtocolError {
  constructor(
    readonly kind: string,
    readonly problem: string,
  ) {
    super(`malformed '${kind}' reply from the guest agent: ${problem}`);
  }
}

function checkId(kind: string, id: string): string {
  if (!ID_RE.test(id)) throw new MalformedAgentReplyError(kind, `bad id ${JSON.stringify(id.slice(0, 40))}`);
  return id;
}

function decodeField(kind: string, what: string, field: string): Uint8Array {
  if (field === '-') return new Uint8Array(0);
  if (field.length % 4 !== 0 || !BASE64_RE.test(field)) throw new MalformedAgentReplyError(kind, `${what} is not base64`);
  if (field.length > base64Length(EXEC_OUTPUT_CAP)) throw new MalformedAgentReplyError(kind, `${what} exceeds the output cap`);
  const b = Buffer.from(field, 'base64');
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/** Parses one line (without its newline) into a reply; throws an AgentProtocolError subclass. */
export function parseAgentLine(line: string): AgentReply {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  const f = text.split(' ');
  const word = f[0]!;
  switch (word) {
    case 'ready':
      if (f.length !== 1) throw new MalformedAgentReplyError(word, 'unexpected fields');
      return { kind: 'ready' };
    case 'pong':
      if (f.length > 2) throw new MalformedAgentReplyError(word, 'unexpected fields');
      return { kind: 'pong', id: f.length === 2 ? checkId(word, f[1]!) : undefined };
    case 'ok':
      if (f.length !== 2 || (f[1] !== 'shutdown' && f[1] !== 'reboot'))
        throw new MalformedAgentReplyError(word, 'expected ok shutdown|reboot');
      return { kind: 'ok', what: f[1] };
    case 'error': {
      if (f.length !== 3) throw new MalformedAgentReplyError(word, 'expected error ID|- REASON');
      const reason = f[2]!;
      if (!/^[a-z][a-z-]{0,39}$/.test(reason)) throw new MalformedAgentReplyError(word, 'bad reason');
      return { kind: 'error', id: f[1] === '-' ? undefined : checkId(word, f[1]!), reason };
    }
    case 'exec-result': {
      if (f.length !== 6) throw new MalformedAgentReplyError(word, `expected 6 fields, got ${f.length}`);
      const id = checkId(word, f[1]!);
      if (!/^\d{1,3}$/.test(f[2]!) || Number(f[2]) > 255) throw new MalformedAgentReplyError(word, 'bad exit status');
      const t = f[3]!;
      if (t !== '-' && t !== 'stdout' && t !== 'stderr' && t !== 'stdout,stderr')
        throw new MalformedAgentReplyError(word, 'bad truncated field');
      return {
        kind: 'exec-result',
        id,
        status: Number(f[2]),
        truncated: { stdout: t.startsWith('stdout'), stderr: t.endsWith('stderr') },
        stdout: decodeField(word, 'stdout', f[4]!),
        stderr: decodeField(word, 'stderr', f[5]!),
      };
    }
    default:
      throw new UnknownAgentReplyError(word);
  }
}

/**
 * Cuts a byte stream into lines of at most `limit` bytes. A longer line is reported once and dropped up to its
 * newline, so memory stays bounded by the limit whatever the guest writes.
 */
export class AgentLineReader {
  private chunks: Uint8Array[] = [];
  private length = 0;
  private discarding = false;

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly onError: (err: AgentProtocolError) => void,
    readonly limit: number = MAX_REPLY_LINE,
  ) {}

  push(bytes: Uint8Array): void {
    let start = 0;
    while (start < bytes.length) {
      const nl = bytes.indexOf(10, start);
      const end = nl < 0 ? bytes.length : nl;
      if (!this.discarding) {
        if (this.length + (end - start) > this.limit) {
          this.chunks = [];
          this.length = 0;
          this.discarding = true;
          this.onError(new AgentLineTooLongError(this.limit));
        } else if (end > start) {
          this.chunks.push(bytes.slice(start, end));
          this.length += end - start;
        }
      }
      if (nl < 0) return;
      if (!this.discarding) {
        const line = Buffer.concat(this.chunks, this.length).toString('latin1');
        this.chunks = [];
        this.length = 0;
        this.onLine(line);
      }
      this.discarding = false;
      start = nl + 1;
    }
  }

  /** Forgets a partial line (the guest restarted). */
  reset(): void {
    this.chunks = [];
    this.length = 0;
    this.discarding = false;
  }
}

// ---- requests -----------------------------------------------------------------------------------------------

export interface ExecRequest {
  argv: string[];
  stdin?: Uint8Array;
  /** Absolute directory in the guest to run in (default: the agent's, /). */
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs: number;
}

export interface ExecResult {
  exitCode: number;
  stdout: Uint8Array;
  stderr: Uint8Array;
  /** True when stdout or stderr went past EXEC_OUTPUT_CAP and was cut there. */
  truncated: boolean;
  durationMs: number;
}

/** Why an agent request failed, carried across the worker boundary as a code. */
export type AgentFailure = 'no-agent' | 'invalid' | 'not-ready' | 'timeout' | 'gone' | 'refused';

export class AgentError extends Error {
  constructor(
    readonly failure: AgentFailure,
    message: string,
    /** For 'refused': the agent's reason word (no-such-cwd, busy, ...). */
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'AgentError';
  }
}

/** POSIX sh single quoting: every byte but NUL survives. */
export function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** The sh command line for an argv (a script the agent sources in a fresh sh). */
export function commandScript(argv: readonly string[]): string {
  return `${argv.map(shellQuote).join(' ')}\n`;
}

export function envScript(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([k, v]) => `export ${k}=${shellQuote(v)}\n`)
    .join('');
}

/** Checks what the sh scripts cannot carry; the API validates the same before anything reaches a VM. */
export function validateExecRequest(req: ExecRequest): string | undefined {
  if (req.argv.length === 0) return 'argv must name a command';
  if (req.argv[0] === '') return 'argv[0] must not be empty';
  if (req.argv.some((a) => a.includes('\0'))) return 'argv must not contain NUL characters';
  if (req.cwd !== undefined && (!req.cwd.startsWith('/') || req.cwd.includes('\0'))) return 'cwd must be an absolute path';
  for (const [k, v] of Object.entries(req.env ?? {})) {
    if (!ENV_NAME_RE.test(k)) return `env name ${JSON.stringify(k)} must match [A-Za-z_][A-Za-z0-9_]*`;
    if (v.includes('\0')) return `env ${k} must not contain NUL characters`;
  }
  if (req.stdin && req.stdin.length > EXEC_STDIN_CAP) return `stdin exceeds ${EXEC_STDIN_CAP} bytes`;
  if (!Number.isInteger(req.timeoutMs) || req.timeoutMs < 1) return 'timeoutMs must be a positive integer';
  return undefined;
}

/** Base64 lines of BODY_LINE_BYTES raw bytes each (a multiple of 3, so only the last line is padded). */
export function bodyLines(bytes: Uint8Array): string[] {
  const lines: string[] = [];
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let i = 0; i < buf.length; i += BODY_LINE_BYTES) lines.push(buf.subarray(i, i + BODY_LINE_BYTES).toString('base64'));
  return lines;
}

/** The request lines of one exec: the header, then the cmd, cwd, env and stdin sections. */
export function execRequestLines(id: string, req: ExecRequest): string[] {
  const enc = new TextEncoder();
  const sections = [
    bodyLines(enc.encode(commandScript(req.argv))),
    req.cwd !== undefined ? bodyLines(enc.encode(req.cwd)) : [],
    req.env && Object.keys(req.env).length ? bodyLines(enc.encode(envScript(req.env))) : [],
    req.stdin ? bodyLines(req.stdin) : [],
  ];
  return [`exec ${id} ${sections.map((s) => s.length).join(' ')}`, ...sections.flat()];
}

// ---- the client -------------------------------------------------------------------------------------------

/** Where request lines go: the agent's console port. */
export interface AgentTransport {
  /** Queues ASCII text for the guest. */
  write(text: string): void;
  /** Bytes queued for the guest but not yet taken by it (for flow control). */
  backlog(): number;
}

interface PendingExec {
  kind: 'exec';
  resolve(r: ExecResult): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
  startedAt: number;
  sent: boolean;
  /** Set while the request waits for the agent to show it is up. */
  waiting?: () => void;
}
interface PendingPing {
  kind: 'ping';
  resolve(): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
  sent: boolean;
}
type Pending = PendingExec | PendingPing;

export interface AgentClientStats {
  /** Lines that were not valid replies (each reported through onProtocolError). */
  malformedLines: number;
  /** Replies naming an id nobody waits for (a timed-out or cancelled request, or a confused guest). */
  unknownIds: number;
  inFlight: number;
}

/** Below this many queued bytes the client writes more; above it it waits for the guest to read. */
const HIGH_WATER = 64 * 1024;
const DRAIN_POLL_MS = 2;
const PROBE_EVERY_MS = 1000;

export class AgentClient {
  private readonly reader: AgentLineReader;
  private readonly pending = new Map<string, Pending>();
  /** Lines waiting for room in the transport; whole requests are queued, so lines never interleave. */
  private queue: string[] = [];
  private queueHead = 0;
  private drainTimer: ReturnType<typeof setTimeout> | undefined;
  private nextId = 1;
  private ready = false;
  private readyWaiters = new Set<() => void>();
  private probeTimer: ReturnType<typeof setInterval> | undefined;
  private closedReason: string | undefined;
  private readonly counts = { malformedLines: 0, unknownIds: 0 };

  constructor(
    private readonly transport: AgentTransport,
    private readonly hooks: { onProtocolError?(err: AgentProtocolError): void } = {},
  ) {
    this.reader = new AgentLineReader(
      (line) => this.onLine(line),
      (err) => this.protocolError(err),
    );
  }

  /** Guest bytes from the agent's port. */
  receive(bytes: Uint8Array): void {
    if (this.closedReason === undefined) this.reader.push(bytes);
  }

  stats(): AgentClientStats {
    return { ...this.counts, inFlight: this.pending.size };
  }

  /** Sends a line outside the request/reply scheme (shutdown, reboot), after any request being written. */
  sendLine(line: string): void {
    this.enqueue([line]);
  }

  /** Round trip to the agent; resolves with the time it took. */
  ping(timeoutMs: number): Promise<number> {
    const t0 = performance.now();
    const id = this.newId();
    return new Promise<number>((resolve, reject) => {
      const p: PendingPing = {
        kind: 'ping',
        resolve: () => resolve(performance.now() - t0),
        reject,
        sent: true,
        timer: setTimeout(() => {
          this.pending.delete(id);
          reject(new AgentError('timeout', `the guest agent did not answer a ping within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      if (!this.open(p)) return;
      this.pending.set(id, p);
      this.enqueue([`ping ${id}`]);
    });
  }

  /** Runs a command in the guest. Rejects with an AgentError (failure says why). */
  exec(req: ExecRequest): Promise<ExecResult> {
    const problem = validateExecRequest(req);
    if (problem) return Promise.reject(new AgentError('invalid', problem));
    const id = this.newId();
    const startedAt = performance.now();
    return new Promise<ExecResult>((resolve, reject) => {
      const p: PendingExec = {
        kind: 'exec',
        resolve,
        reject,
        startedAt,
        sent: false,
        timer: setTimeout(() => this.execTimedOut(id, p, req.timeoutMs), req.timeoutMs),
      };
      if (!this.open(p)) return;
      this.pending.set(id, p);
      this.whenReady(
        (p.waiting = () => {
          p.waiting = undefined;
          if (this.pending.get(id) !== p) return;
          p.sent = true;
          this.enqueue(execRequestLines(id, req));
        }),
      );
    });
  }

  /**
   * Fails every request in flight (the VM stopped, or the guest rebooted and its agent starts afresh). With
   * `final` the client accepts nothing more.
   */
  reset(reason: string, final = false): void {
    if (final) this.closedReason = reason;
    this.ready = false;
    this.reader.reset();
    this.queue = [];
    this.queueHead = 0;
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    if (final) this.stopProbing();
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      if (p.kind === 'exec' && p.waiting) this.readyWaiters.delete(p.waiting);
      p.reject(new AgentError('gone', reason));
    }
    if (this.readyWaiters.size === 0) this.stopProbing();
  }

  close(reason: string): void {
    this.reset(reason, true);
  }

  private open(p: Pending): boolean {
    if (this.closedReason === undefined) return true;
    clearTimeout(p.timer);
    p.reject(new AgentError('gone', this.closedReason));
    return false;
  }

  private newId(): string {
    return String(this.nextId++);
  }

  private execTimedOut(id: string, p: PendingExec, timeoutMs: number): void {
    if (this.pending.get(id) !== p) return;
    this.pending.delete(id);
    if (p.waiting) this.readyWaiters.delete(p.waiting);
    if (p.sent) {
      // Kill what the command started; a late result for this id is then dropped as unknown.
      this.enqueue([`cancel ${id}`]);
      p.reject(new AgentError('timeout', `the command did not finish within ${timeoutMs} ms (it was killed)`));
    } else {
      p.reject(
        new AgentError(
          'not-ready',
          `the guest agent did not answer within ${timeoutMs} ms (is typevisor-agent running on /dev/hvc0 in the guest?)`,
        ),
      );
    }
  }

  /** Runs `fn` once the agent has shown it is up, probing it with pings meanwhile. */
  private whenReady(fn: () => void): void {
    if (this.ready) return fn();
    this.readyWaiters.add(fn);
    if (!this.probeTimer) {
      const probe = (): void => {
        // Stop probing when nobody waits any more (the requests timed out).
        if (this.readyWaiters.size === 0) return this.stopProbing();
        this.enqueue(['ping']);
      };
      probe();
      this.probeTimer = setInterval(probe, PROBE_EVERY_MS);
      // Probing alone must not keep a process alive; the requests' own timers do while they wait.
      this.probeTimer.unref?.();
    }
  }

  private stopProbing(): void {
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.probeTimer = undefined;
  }

  private becameReady(): void {
    this.ready = true;
    this.stopProbing();
    const waiters = [...this.readyWaiters];
    this.readyWaiters.clear();
    for (const w of waiters) w();
  }

  private enqueue(lines: string[]): void {
    if (this.closedReason !== undefined) return;
    for (const l of lines) this.queue.push(`${l}\n`);
    this.pump();
  }

  /** Writes queued lines while the guest keeps up; otherwise polls until it has read the backlog. */
  private pump(): void {
    // While a drain poll is pending it will write; a second chain of polls would only spin.
    if (this.drainTimer) return;
    while (this.queueHead < this.queue.length && this.transport.backlog() < HIGH_WATER) {
      let batch = '';
      while (this.queueHead < this.queue.length && batch.length < 16 * 1024) batch += this.queue[this.queueHead++];
      this.transport.write(batch);
    }
    if (this.queueHead >= this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    } else {
      this.drainTimer = setTimeout(() => {
        this.drainTimer = undefined;
        this.pump();
      }, DRAIN_POLL_MS);
    }
  }

  private protocolError(err: AgentProtocolError): void {
    this.counts.malformedLines++;
    this.hooks.onProtocolError?.(err);
  }

  private onLine(line: string): void {
    if (line === '' || line === '\r') return;
    let reply: AgentReply;
    try {
      reply = parseAgentLine(line);
    } catch (err) {
      if (err instanceof AgentProtocolError) return this.protocolError(err);
      throw err;
    }
    this.handle(reply);
  }

  private handle(reply: AgentReply): void {
    switch (reply.kind) {
      case 'ready': {
        // A (re)started agent knows nothing of requests sent to its predecessor.
        for (const [id, p] of this.pending) {
          if (!p.sent) continue;
          clearTimeout(p.timer);
          this.pending.delete(id);
          p.reject(new AgentError('gone', 'the guest agent restarted while the request was in flight'));
        }
        this.becameReady();
        return;
      }
      case 'pong': {
        this.becameReady();
        const p = reply.id !== undefined ? this.take(reply.id, 'ping') : undefined;
        p?.resolve();
        return;
      }
      case 'ok':
        return;
      case 'error': {
        if (reply.id === undefined)
          return this.protocolError(new MalformedAgentReplyError('error', `agent error ${reply.reason}`));
        const p = this.take(reply.id);
        p?.reject(new AgentError('refused', `the guest agent refused the request: ${reply.reason}`, reply.reason));
        return;
      }
      case 'exec-result': {
        const p = this.take(reply.id, 'exec');
        p?.resolve({
          exitCode: reply.status,
          stdout: reply.stdout,
          stderr: reply.stderr,
          truncated: reply.truncated.stdout || reply.truncated.stderr,
          durationMs: Math.round(performance.now() - p.startedAt),
        });
        return;
      }
    }
  }

  private take(id: string, kind: 'exec'): PendingExec | undefined;
  private take(id: string, kind: 'ping'): PendingPing | undefined;
  private take(id: string): Pending | undefined;
  private take(id: string, kind?: Pending['kind']): Pending | undefined {
    const p = this.pending.get(id);
    if (!p || (kind && p.kind !== kind)) {
      this.counts.unknownIds++;
      return undefined;
    }
    this.pending.delete(id);
    clearTimeout(p.timer);
    return p;
  }
}
