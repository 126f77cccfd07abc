/**
 * `typevisor ssh NAME [-l USER] [-i KEY] [-- CMD...]`: runs the system's ssh(1) into the VM through the host port
 * published to its port 22, as the user its first-boot configuration created (or -l USER). Without CMD it is an
 * interactive login; with CMD the command's exit status is ours (ssh's 255 means ssh itself failed).
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import type { VmView } from '../../host/actions.js';
import { DEFAULT_LOGIN_USER } from '../../host/first-boot/config.js';
import { Client, ClientError, EXIT, resolveEndpoint } from '../client.js';
import { COMMON_HELP, COMMON_OPTIONS, enc } from '../verb.js';

export const summary = 'ssh into a VM through its published port 22 as its first-boot user';

const USAGE = `usage: typevisor ssh NAME [-l USER] [-i KEYFILE] [-o OPTION]... [-- CMD [ARGS...]]

Runs ssh(1) to the host port published to the VM's TCP port 22 (create it with --publish HOSTPORT:22) as the
user its first-boot configuration made (--ssh-key/--user-data at create; 'debian' otherwise). The VM's host
key is not recorded: each VM makes its own on first boot, and the port is the VM's own published port.

options:
  -l, --user USER     log in as USER
  -i, --identity FILE the private key (default: ssh's own choice: ~/.ssh/id_*, the agent)
  -o, --option OPT    passed to ssh as -o OPT (repeatable), e.g. -o ConnectTimeout=30

exit status: the remote command's, or ssh's 255 when the connection failed; 3 VM not found, 4 no port 22 published

${COMMON_HELP.replace(/\nexit status:.*$/s, '')}`;

export async function run(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const command = dash < 0 ? [] : argv.slice(dash + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: own,
      options: {
        ...COMMON_OPTIONS,
        user: { type: 'string', short: 'l' },
        identity: { type: 'string', short: 'i' },
        option: { type: 'string', short: 'o', multiple: true },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    console.error(`typevisor ssh: ${(err as Error).message}\n\n${USAGE}`);
    return EXIT.USAGE;
  }
  const v = parsed.values;
  if (v.help) {
    console.log(USAGE);
    return EXIT.OK;
  }
  const [name, ...extra] = parsed.positionals;
  if (!name || extra.length) {
    console.error(`typevisor ssh: name one VM (a command goes after --)\n\n${USAGE}`);
    return EXIT.USAGE;
  }
  let vm: VmView;
  try {
    const client = new Client(resolveEndpoint({ url: v.url, token: v.token, home: v.home, ca: v.ca }));
    vm = await client.json<VmView>('GET', `/vms/${enc(name)}`);
  } catch (err) {
    if (err instanceof ClientError) {
      console.error(`typevisor ssh: ${err.message}${err.code ? ` [${err.code}]` : ''}`);
      return err.exitCode;
    }
    throw err;
  }
  const port = (vm.config.publish ?? []).find((p) => p.proto === 'tcp' && p.guestPort === 22);
  if (!port) {
    console.error(`typevisor ssh: '${name}' publishes no host port to its port 22 (create it with --publish HOSTPORT:22)`);
    return EXIT.CONFLICT;
  }
  if (vm.state !== 'running') console.error(`typevisor ssh: warning: '${name}' is ${vm.state}`);
  const host = port.hostIp === '0.0.0.0' ? '127.0.0.1' : port.hostIp;
  const user = v.user ?? vm.login?.user ?? DEFAULT_LOGIN_USER;
  const args = [
    '-p',
    String(port.hostPort),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    ...(v.identity ? ['-i', v.identity, '-o', 'IdentitiesOnly=yes'] : []),
    ...(v.option ?? []).flatMap((o) => ['-o', o]),
    ...(command.length ? [] : ['-t']),
    `${user}@${host}`,
    ...(command.length ? ['--', ...command] : []),
  ];
  return new Promise((resolve) => {
    const child = spawn('ssh', args, { stdio: 'inherit' });
    child.on('error', (err) => {
      console.error(`typevisor ssh: cannot run ssh: ${err.message}`);
      resolve(EXIT.ERROR);
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + 1 : EXIT.ERROR)));
  });
}
