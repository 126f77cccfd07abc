/**
 * First-boot configuration, NoCloud-style: what `typevisor create --ssh-key FILE --user-data FILE` gives, parsed
 * into one typed FirstBootConfig before anything is written. user-data is either a script (`#!` first line, run
 * once at first boot) or a `#cloud-config` document (YAML subset or JSON) with the keys below; an unknown key, a
 * bad hostname, user name, key or address is a FirstBootError naming it, never passed on to the guest.
 */
import { z } from 'zod';
import { parseYamlSubset, YamlError } from './yaml-subset.js';

export class FirstBootError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FirstBootError';
  }
}

/** user-data larger than this is refused (cloud-init's NoCloud seeds are small too). */
export const MAX_USER_DATA_BYTES = 64 * 1024;
/** The user `--ssh-key` alone creates (Debian's cloud images call theirs the same). */
export const DEFAULT_LOGIN_USER = 'debian';

const HOSTNAME_RE = /^(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?$/i;
const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$/;
const SSH_KEY_RE = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+={0,3}( [^\n\r]*)?$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const CIDR = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/([1-9]|[12]\d|3[0-2])$/;
const ABS_PATH = /^\/[^\0\n]*$/;

const SshKey = z.string().trim().regex(SSH_KEY_RE, 'not an OpenSSH public key (TYPE BASE64 [COMMENT])');
const Groups = z
  .union([z.string(), z.array(z.string())])
  .transform((g) => (typeof g === 'string' ? g.split(',') : g).map((s) => s.trim()).filter(Boolean));

const UserEntry = z
  .object({
    name: z.string().regex(USER_RE, 'a user name is lower-case letters, digits, _ and -, at most 32'),
    ssh_authorized_keys: z.array(SshKey).max(64).default([]),
    sudo: z.union([z.string().regex(/^[^\n]+$/), z.literal(false)]).optional(),
    shell: z.string().regex(ABS_PATH).default('/bin/bash'),
    groups: Groups.pipe(z.array(z.string().regex(USER_RE))).default([]),
    gecos: z
      .string()
      .regex(/^[^:\n]*$/)
      .optional(),
    lock_passwd: z.boolean().optional(),
  })
  .strict();

const Ethernet = z
  .object({
    dhcp4: z.boolean().optional(),
    addresses: z.array(z.string().regex(CIDR, 'an address is A.B.C.D/PREFIX')).max(8).optional(),
    gateway4: z.string().regex(IPV4).optional(),
    nameservers: z
      .object({ addresses: z.array(z.string().regex(IPV4)).max(8) })
      .strict()
      .optional(),
  })
  .strict();

const CloudConfigSchema = z
  .object({
    hostname: z.string().regex(HOSTNAME_RE, 'a hostname is letters, digits and -, at most 63').optional(),
    ssh_authorized_keys: z.array(SshKey).max(64).optional(),
    users: z
      .array(z.union([z.literal('default'), UserEntry]))
      .max(32)
      .optional(),
    network: z
      .object({
        version: z.union([z.literal(2), z.literal('2')]),
        ethernets: z.record(z.string().regex(/^[a-z0-9_-]{1,15}$/i), Ethernet),
      })
      .strict()
      .optional(),
    apt: z
      .object({
        preserve_sources_list: z.boolean().optional(),
        sources: z
          .record(
            z.string().regex(/^[a-z0-9_-]{1,64}$/i),
            z.object({ source: z.string().regex(/^deb(-src)? [^\n]+$/, "a source is a 'deb ...' line") }).strict(),
          )
          .optional(),
      })
      .strict()
      .optional(),
    package_update: z.boolean().optional(),
    packages: z.array(z.string().regex(PACKAGE_RE, 'not a Debian package name')).max(256).optional(),
    write_files: z
      .array(
        z
          .object({
            path: z.string().regex(ABS_PATH),
            content: z.string().default(''),
            permissions: z
              .string()
              .regex(/^0?[0-7]{3,4}$/)
              .optional(),
            owner: z
              .string()
              .regex(/^[a-z_][a-z0-9_-]*(:[a-z_][a-z0-9_-]*)?$/)
              .optional(),
          })
          .strict(),
      )
      .max(64)
      .optional(),
    runcmd: z
      .array(z.union([z.string(), z.array(z.string()).min(1)]))
      .max(256)
      .optional(),
  })
  .strict();

export interface FirstBootUser {
  name: string;
  sshAuthorizedKeys: string[];
  /** A sudoers rule (e.g. 'ALL=(ALL) NOPASSWD:ALL'), or none. */
  sudo?: string;
  shell: string;
  groups: string[];
  gecos?: string;
}

export type FirstBootNetwork =
  { kind: 'dhcp' } | { kind: 'static'; addresses: string[]; gateway?: string; dns: string[]; interface?: string };

export interface FirstBootConfig {
  hostname: string;
  /** The first user is the one `typevisor ssh` logs in as. */
  users: FirstBootUser[];
  network: FirstBootNetwork;
  aptSources: { name: string; line: string }[];
  /** false: the image's own apt sources are removed (a VM with no internet uses only the given ones). */
  keepImageSources: boolean;
  packageUpdate: boolean;
  packages: string[];
  writeFiles: { path: string; content: string; permissions?: string; owner?: string }[];
  /** Shell lines run once, in order, after the packages (runcmd). */
  commands: string[];
  /** A user-data script (`#!` first line) run once after the commands. */
  script?: string;
  /** user-data as given, kept on the seed for reference. */
  userData: string;
}

export interface FirstBootInput {
  /** Public keys from --ssh-key files (one per line; blank and # lines are skipped). */
  sshAuthorizedKeys?: string[];
  userData?: string;
}

/** POSIX shell single-quoting. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function parseCloudConfig(body: string): z.infer<typeof CloudConfigSchema> {
  let raw: unknown;
  try {
    raw = body.trimStart().startsWith('{') ? JSON.parse(body) : parseYamlSubset(body);
  } catch (err) {
    if (err instanceof YamlError || err instanceof SyntaxError) throw new FirstBootError(`user-data: ${(err as Error).message}`);
    throw err;
  }
  if (raw === null) raw = {};
  const parsed = CloudConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? issue.path.join('.') : 'document';
    const what = issue.code === 'unrecognized_keys' ? `unsupported key(s) ${issue.keys.join(', ')}` : issue.message;
    throw new FirstBootError(`user-data: ${where}: ${what}`);
  }
  return parsed.data;
}

function parseKeys(keys: string[]): string[] {
  const out: string[] = [];
  for (const k of keys) {
    for (const line of k.split('\n').map((l) => l.trim())) {
      if (!line || line.startsWith('#')) continue;
      if (!SSH_KEY_RE.test(line)) throw new FirstBootError(`--ssh-key: not an OpenSSH public key: ${line.slice(0, 40)}`);
      out.push(line);
    }
  }
  return out;
}

function networkOf(cfg: z.infer<typeof CloudConfigSchema>): FirstBootNetwork {
  const eths = Object.entries(cfg.network?.ethernets ?? {});
  if (eths.length === 0) return { kind: 'dhcp' };
  if (eths.length > 1) throw new FirstBootError('user-data: network.ethernets: one interface is supported');
  const [name, eth] = eths[0]!;
  if (eth.dhcp4 && eth.addresses?.length)
    throw new FirstBootError(`user-data: network.ethernets.${name}: dhcp4 and addresses exclude each other`);
  if (!eth.addresses?.length) {
    if (eth.dhcp4 === false) throw new FirstBootError(`user-data: network.ethernets.${name}: no dhcp4 and no addresses`);
    return { kind: 'dhcp' };
  }
  return {
    kind: 'static',
    addresses: eth.addresses,
    gateway: eth.gateway4,
    dns: eth.nameservers?.addresses ?? [],
    // Any name but 'all' matches that interface; 'all' (or eth0, which Debian on a virt board does not name
    // its NIC) matches every Ethernet NIC.
    interface: name === 'all' || name === 'eth0' ? undefined : name,
  };
}

/** Parses what create was given; `vmName` is the default hostname. */
export function parseFirstBoot(input: FirstBootInput, vmName: string): FirstBootConfig {
  const userData = input.userData ?? '';
  if (Buffer.byteLength(userData) > MAX_USER_DATA_BYTES)
    throw new FirstBootError(`user-data is larger than ${MAX_USER_DATA_BYTES} bytes`);
  if (userData.includes('\0')) throw new FirstBootError('user-data contains a NUL byte');
  const keys = parseKeys(input.sshAuthorizedKeys ?? []);
  const firstLine = userData.split('\n', 1)[0]!.trim();
  let cfg: z.infer<typeof CloudConfigSchema> = {};
  let script: string | undefined;
  if (firstLine.startsWith('#!')) script = userData;
  else if (firstLine === '#cloud-config') cfg = parseCloudConfig(userData.slice(userData.indexOf('\n') + 1));
  else if (userData.trim() !== '') throw new FirstBootError("user-data must start with '#cloud-config' or a '#!' script line");

  const users: FirstBootUser[] = [];
  const defaultUser = (): FirstBootUser => ({
    name: DEFAULT_LOGIN_USER,
    sshAuthorizedKeys: [],
    sudo: 'ALL=(ALL) NOPASSWD:ALL',
    shell: '/bin/bash',
    groups: [],
  });
  for (const u of cfg.users ?? ['default']) {
    const user: FirstBootUser =
      u === 'default'
        ? defaultUser()
        : {
            name: u.name,
            sshAuthorizedKeys: u.ssh_authorized_keys,
            sudo: u.sudo === false ? undefined : u.sudo,
            shell: u.shell,
            groups: u.groups,
            gecos: u.gecos,
          };
    if (users.some((x) => x.name === user.name)) throw new FirstBootError(`user-data: users: '${user.name}' twice`);
    if (user.name === 'root') throw new FirstBootError("user-data: users: 'root' cannot be created");
    users.push(user);
  }
  if (users.length === 0) throw new FirstBootError('user-data: users: at least one user is needed to log in');
  // Keys from --ssh-key and top-level ssh_authorized_keys belong to the login user (cloud-init's default user).
  users[0]!.sshAuthorizedKeys = [...new Set([...keys, ...(cfg.ssh_authorized_keys ?? []), ...users[0]!.sshAuthorizedKeys])];

  return {
    hostname: cfg.hostname ?? vmName,
    users,
    network: networkOf(cfg),
    aptSources: Object.entries(cfg.apt?.sources ?? {}).map(([name, s]) => ({ name, line: s.source })),
    keepImageSources: cfg.apt?.preserve_sources_list ?? true,
    packageUpdate: cfg.package_update ?? (cfg.packages?.length ?? 0) > 0,
    packages: cfg.packages ?? [],
    writeFiles: cfg.write_files ?? [],
    commands: (cfg.runcmd ?? []).map((c) => (typeof c === 'string' ? c : c.map(shellQuote).join(' '))),
    script,
    userData,
  };
}
