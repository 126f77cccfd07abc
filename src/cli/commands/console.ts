import { ClientError, EXIT } from '../client.js';
import { defineVerb, enc } from '../verb.js';

export const summary = "attach to a VM's console (detach with Ctrl-])";

/** Ctrl-], as in virsh and telnet. */
const ESCAPE = 0x1d;

export const run = defineVerb({
  name: 'console',
  usage: `console NAME [--timeout SECONDS]

Raw console bytes both ways over the daemon's WebSocket. Press Ctrl-] to detach; several viewers may attach.
With --timeout, detach after that many seconds.`,
  options: { timeout: { type: 'string' } },
  minArgs: 1,
  maxArgs: 1,
  async run({ values, positionals, client }) {
    const name = positionals[0]!;
    const ws = client.websocket(`/vms/${enc(name)}/console`);
    const stdin = process.stdin;
    return new Promise<number>((resolve, reject) => {
      let done = false;
      const finish = (code: number) => {
        if (done) return;
        done = true;
        if (stdin.isTTY) stdin.setRawMode(false);
        stdin.removeAllListeners('data');
        // A piped stdin keeps the process alive even when paused; this verb is done with it.
        stdin.destroy();
        if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close();
        process.stderr.write(`\r\n[detached from ${name}]\r\n`);
        resolve(code);
      };
      ws.on('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let msg = `HTTP ${res.statusCode}`;
          let code: string | undefined;
          try {
            const e = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error: { code: string; message: string } }).error;
            msg = e.message;
            code = e.code;
          } catch {
            /* not JSON */
          }
          done = true;
          reject(
            new ClientError(
              res.statusCode === 404 ? EXIT.NOT_FOUND : res.statusCode === 401 ? EXIT.UNREACHABLE : EXIT.ERROR,
              msg,
              code,
            ),
          );
        });
      });
      ws.on('error', (err: NodeJS.ErrnoException) => {
        if (done) return;
        done = true;
        reject(new ClientError(EXIT.UNREACHABLE, `cannot reach the typevisor daemon (${err.code ?? err.message})`));
      });
      ws.on('open', () => {
        process.stderr.write(`[connected to ${name}; detach with Ctrl-]]\r\n`);
        if (stdin.isTTY) stdin.setRawMode(true);
        stdin.on('data', (chunk: Buffer) => {
          const i = chunk.indexOf(ESCAPE);
          if (i >= 0) {
            if (i > 0) ws.send(chunk.subarray(0, i));
            finish(EXIT.OK);
            return;
          }
          ws.send(chunk);
        });
        stdin.resume();
        if (values.timeout !== undefined) setTimeout(() => finish(EXIT.OK), Number(values.timeout) * 1000).unref();
      });
      ws.on('message', (data: Buffer) => process.stdout.write(data));
      ws.on('close', () => finish(EXIT.OK));
    });
  },
});
