import { ClientError, EXIT } from '../client.js';
import { defineVerb, enc } from '../verb.js';

export const summary = "print a VM's console log (-f follows the live console)";

export const run = defineVerb({
  name: 'logs',
  usage: 'logs NAME [-f|--follow]',
  options: { follow: { type: 'boolean', short: 'f' } },
  minArgs: 1,
  maxArgs: 1,
  async run({ values, positionals, client }) {
    const name = positionals[0]!;
    process.stdout.write(await client.text(`/vms/${enc(name)}/console.log`));
    if (!values.follow) return EXIT.OK;
    const ws = client.websocket(`/vms/${enc(name)}/console`);
    return new Promise<number>((resolve, reject) => {
      ws.on('message', (data: Buffer) => process.stdout.write(data));
      ws.on('error', (err) => reject(new ClientError(EXIT.UNREACHABLE, `console stream: ${err.message}`)));
      ws.on('unexpected-response', (_req, res) =>
        reject(new ClientError(res.statusCode === 404 ? EXIT.NOT_FOUND : EXIT.ERROR, `HTTP ${res.statusCode}`)),
      );
      ws.on('close', () => resolve(EXIT.OK));
      process.once('SIGINT', () => {
        ws.close();
        resolve(EXIT.OK);
      });
    });
  },
});
