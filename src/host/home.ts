/** Where the daemon keeps its state: $TYPEVISOR_HOME, else $XDG_DATA_HOME/typevisor, else ~/.local/share/typevisor. */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TYPEVISOR_HOME) return resolve(env.TYPEVISOR_HOME);
  const xdg = env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith('/') ? env.XDG_DATA_HOME : join(homedir(), '.local/share');
  return join(xdg, 'typevisor');
}

export interface HomeLayout {
  root: string;
  vmsDir: string;
  socket: string;
  tokenFile: string;
  pidFile: string;
  imagesDir: string;
  networksDir: string;
}

export function homeLayout(root: string): HomeLayout {
  return {
    root,
    vmsDir: join(root, 'vms'),
    socket: join(root, 'typevisor.sock'),
    tokenFile: join(root, 'token'),
    pidFile: join(root, 'daemon.pid'),
    imagesDir: join(root, 'images'),
    networksDir: join(root, 'networks'),
  };
}

/** VM names are directory names: lowercase letters, digits and dashes, starting with a letter or digit. */
export const VM_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function isValidVmName(name: unknown): name is string {
  return typeof name === 'string' && VM_NAME_RE.test(name);
}
