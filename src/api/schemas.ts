/**
 * The API's request and response shapes, as zod schemas. Requests are parsed with them (untrusted JSON becomes
 * typed values or a 400 with the first problem), and /openapi.json is generated from the very same schemas.
 */
import { z } from 'zod';
import { VM_NAME_RE } from '../host/home.js';
import { VM_STATES } from '../host/lifecycle.js';
import { VM_ACTIONS } from '../host/actions.js';
import { MAX_CPUS, MAX_MEMORY_MIB, MIN_MEMORY_MIB } from '../vm/config.js';

export const VmName = z
  .string()
  .regex(VM_NAME_RE, 'must be 1-63 characters of [a-z0-9-], starting with a letter or digit')
  .describe('VM name');
const ImageName = z.string().regex(VM_NAME_RE, 'must be [a-z0-9-]').describe("image name ('default' is the built guest)");
const HostPath = z.string().min(1).max(4096).describe('absolute path on the daemon host');

export const DiskBody = z
  .object({
    sizeMiB: z
      .number()
      .int()
      .min(1)
      .max(1024 * 1024)
      .optional()
      .describe('virtual size in MiB (default: the backing image size)'),
    format: z.enum(['raw', 'qcow2']).default('qcow2'),
    backing: ImageName.optional().describe('image whose root filesystem backs this disk (thin qcow2 overlay)'),
  })
  .strict();

/** CPU settings in a create or update body; ranges are checked by the host (they depend on its cores). */
export const CpuBody = z
  .object({
    weight: z.number().describe('proportional share under contention, 1..10000 (default 100)'),
    capPercent: z.number().nullable().describe('at most this percent of one host core (150 = 1.5 cores); null: no cap'),
    cpuset: z.string().max(256).nullable().describe("host cores the VM may run on ('0', '0-1', '0,2'); null: every core"),
    burst: z
      .object({ capPercent: z.number(), seconds: z.number() })
      .strict()
      .nullable()
      .describe('while the host is idle, a VM at its cap may use capPercent for at most seconds; null: no burst'),
  })
  .partial()
  .strict();

export const RateLimitBody = z
  .object({
    bytesPerSecond: z.number().positive().max(1e12).optional().describe('sustained rate in bytes per second'),
    packetsPerSecond: z.number().positive().max(1e9).optional(),
    burstBytes: z.number().min(1518).max(1e12).optional().describe('bucket size; at least one full frame'),
    burstPackets: z.number().positive().max(1e9).optional(),
  })
  .strict()
  .refine(
    (r) => r.bytesPerSecond !== undefined || r.packetsPerSecond !== undefined,
    'give bytesPerSecond and/or packetsPerSecond',
  );

const NetworkName = z.string().regex(VM_NAME_RE, 'must be [a-z0-9-]').describe('network name');

export const NicBody = z
  .object({
    network: NetworkName.default('default'),
    mac: z
      .string()
      .regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, 'must look like 52:54:00:12:34:56')
      .optional()
      .describe('generated when absent'),
    rx: RateLimitBody.optional().describe('limit on traffic to the guest'),
    tx: RateLimitBody.optional().describe('limit on traffic from the guest'),
    offload: z
      .boolean()
      .optional()
      .describe('virtio-net checksum and TCP segmentation offloads (default true); false to debug without them'),
  })
  .strict();

export const PublishBody = z
  .object({
    proto: z.enum(['tcp', 'udp']).default('tcp'),
    hostIp: z.string().max(64).optional().describe('address to bind on the host (default 127.0.0.1)'),
    hostPort: z.number().int().min(1).max(65535),
    guestPort: z.number().int().min(1).max(65535),
    nic: z.number().int().min(0).max(3).default(0),
  })
  .strict();
/** Memory settings; ranges against the maximum are checked by the host. */
export const MemoryBody = z
  .object({
    minMiB: z
      .number()
      .int()
      .min(1)
      .max(MAX_MEMORY_MIB)
      .nullable()
      .describe('the floor the balloon never takes the guest under; null: the maximum (no ballooning)'),
    weight: z.number().int().describe('share of the memory pool under pressure, 1..10000 (default 100)'),
  })
  .partial()
  .strict();

export const MemoryUpdateBody = MemoryBody.extend({
  targetMiB: z
    .number()
    .int()
    .min(1)
    .max(MAX_MEMORY_MIB)
    .nullable()
    .optional()
    .describe('running VMs: pin the guest size within [min, max] MiB (the balloon takes the rest); null: the policy decides'),
}).strict();

export const CreateVmBody = z
  .object({
    name: VmName,
    vcpus: z.number().int().min(1).max(MAX_CPUS).default(1),
    memoryMiB: z.number().int().min(MIN_MEMORY_MIB).max(MAX_MEMORY_MIB).default(256),
    image: ImageName.optional().describe("image to boot; 'default' when no kernel is given"),
    kernel: HostPath.optional(),
    initrd: HostPath.optional(),
    kernelFormat: z
      .enum(['auto', 'raw'])
      .default('auto')
      .describe("'auto': a RISC-V Linux Image or riscv64 ELF, anything else is refused; 'raw': load the bytes as they are"),
    cmdline: z.string().max(4096).optional(),
    firmware: z
      .union([z.enum(['builtin', 'none']), HostPath])
      .default('builtin')
      .describe("'builtin' SBI, 'none' (bare metal in M-mode) or a firmware file path"),
    disks: z.array(DiskBody).max(6).default([]),
    rootDisk: z.boolean().default(true).describe("give an image-based VM a qcow2 overlay of the image's root filesystem"),
    autostart: z.boolean().default(false).describe('start when the daemon starts'),
    rng: z.boolean().default(true),
    balloon: z.boolean().default(true),
    virtioConsole: z.boolean().default(true).describe('virtio-console port for the guest agent (graceful shutdown)'),
    cpu: CpuBody.optional(),
    nics: z.array(NicBody).max(4).optional().describe("NICs; absent: one on the 'default' network; [] for none"),
    publish: z.array(PublishBody).max(64).optional().describe('host ports forwarded to guest ports (nat networks)'),
    memory: MemoryBody.optional(),
    firstBoot: z
      .object({
        sshAuthorizedKeys: z
          .array(z.string().max(16 * 1024))
          .max(64)
          .optional(),
        userData: z
          .string()
          .max(64 * 1024)
          .optional(),
      })
      .strict()
      .optional()
      .describe('first-boot configuration (NoCloud-style seed disk): ssh public keys and cloud-config or script user-data'),
  })
  .strict();

export const NicRateBody = z
  .object({
    nic: z.number().int().min(0).max(3).default(0),
    rx: RateLimitBody.nullable().optional().describe('null removes the limit'),
    tx: RateLimitBody.nullable().optional().describe('null removes the limit'),
  })
  .strict();

export const CreateNetworkBody = z
  .object({
    name: NetworkName,
    mode: z.enum(['nat', 'isolated']).default('nat'),
    subnet: z.string().max(32).optional().describe('IPv4 CIDR; default: the first free 10.0.N.0/24'),
    dnsHosts: z.record(z.string().max(253), z.string().max(15)).optional().describe('extra names its DNS answers'),
  })
  .strict();

export const ImportImageBody = z
  .object({
    name: ImageName,
    disk: HostPath.describe('raw or qcow2 disk to copy into the image store'),
    kernel: HostPath.optional().describe('riscv64 Linux Image or ELF booted directly'),
    initrd: HostPath.optional(),
    cmdline: z.string().max(4096).optional(),
    firmware: HostPath.optional().describe('M-mode firmware for a firmware-booted image (default: the built OpenSBI)'),
    boot: z.enum(['kernel', 'firmware']).optional().describe("'firmware': the disk boots itself through U-Boot"),
    os: z.string().max(200).optional(),
    arch: z.string().max(32).optional().describe("the image's architecture; typevisor runs only riscv64"),
  })
  .strict();

export const UpdateVmBody = z
  .object({
    vcpus: z.number().int().min(1).max(MAX_CPUS).optional(),
    memoryMiB: z.number().int().min(MIN_MEMORY_MIB).max(MAX_MEMORY_MIB).optional(),
    cmdline: z.string().max(4096).optional(),
    autostart: z.boolean().optional(),
    balloonTargetMiB: z
      .number()
      .int()
      .min(0)
      .max(MAX_MEMORY_MIB)
      .optional()
      .describe('running VMs: memory the virtio-balloon should take back from the guest'),
    cpu: CpuBody.optional().describe('CPU settings; a running VM gets them at once'),
    nicRates: z.array(NicRateBody).max(4).optional().describe('NIC bandwidth limits; applied live to a running VM'),
    memory: MemoryUpdateBody.optional().describe('memory floor, weight and (running VMs) target'),
  })
  .strict()
  .refine((b) => Object.keys(b).length > 0, 'nothing to update');

export const ActionName = z.enum(VM_ACTIONS);
export const ActionBody = z
  .object({
    // An hour at most: a systemd guest on an emulated CPU on a loaded host can take minutes to stop its services.
    timeoutSeconds: z
      .number()
      .int()
      .min(0)
      .max(3600)
      .optional()
      .describe('shutdown and a graceful reboot: seconds to wait for the guest before forcing'),
    graceful: z
      .boolean()
      .optional()
      .describe('reboot: ask the guest agent to reboot (reset after timeoutSeconds); without it, reset at once'),
  })
  .strict();

export const HistoryQuery = z
  .object({
    history: z
      .string()
      .regex(/^(all|\d{1,4})$/, "seconds of history (1-900) or 'all'")
      .optional(),
  })
  .strict();
export const EventsQuery = z
  .object({
    follow: z.enum(['true', 'false', '1', '0']).optional(),
    after: z
      .string()
      .regex(/^\d{1,15}$/)
      .optional(),
    vm: z.string().regex(VM_NAME_RE).optional(),
  })
  .strict();

const KIB = 1024;
const MAX_EXEC_STDIN = 8 * 1024 * KIB;
const utf8Bytes = (s: string) => Buffer.byteLength(s, 'utf8');
const noNul = (s: string) => !s.includes('\0');
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;

export const ExecBody = z
  .object({
    argv: z
      .array(
        z
          .string()
          .refine((a) => utf8Bytes(a) <= 64 * KIB, 'an argument must be at most 64 KiB')
          .refine(noNul, 'an argument must not contain NUL characters'),
      )
      .min(1, 'argv must name a command')
      .max(256, 'at most 256 arguments')
      .refine((a) => a[0] !== '', 'argv[0] must not be empty')
      .describe('the command and its arguments (run by sh in the guest, each argument quoted)'),
    stdin: z
      .string()
      .max(Math.ceil(MAX_EXEC_STDIN / 3) * 4, 'stdin must be at most 8 MiB')
      .refine((b) => b.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(b), 'stdin must be base64')
      .refine((b) => Buffer.byteLength(b, 'base64') <= MAX_EXEC_STDIN, 'stdin must be at most 8 MiB')
      .optional()
      .describe('bytes for the command’s standard input, base64 (default: none, /dev/null)'),
    cwd: z
      .string()
      .min(1)
      .max(4096)
      .startsWith('/', 'cwd must be an absolute path')
      .refine(noNul, 'cwd must not contain NUL characters')
      .optional()
      .describe('directory in the guest to run in (default /)'),
    env: z
      .record(
        z.string(),
        z
          .string()
          .refine((v) => utf8Bytes(v) <= 64 * KIB, 'an environment value must be at most 64 KiB')
          .refine(noNul, 'an environment value must not contain NUL characters'),
      )
      .superRefine((e, ctx) => {
        const names = Object.keys(e);
        const bad = names.find((k) => !ENV_NAME_RE.test(k));
        if (bad !== undefined)
          ctx.addIssue({
            code: 'custom',
            message: `environment name ${JSON.stringify(bad.slice(0, 64))} must match [A-Za-z_][A-Za-z0-9_]* (at most 256 characters)`,
          });
        if (names.length > 256) ctx.addIssue({ code: 'custom', message: 'at most 256 environment variables' });
      })
      .optional()
      .describe('extra environment variables'),
    timeoutMs: z
      .number()
      .int()
      .min(1)
      .max(3_600_000)
      .default(60_000)
      .describe('milliseconds the command may run before it is killed and the request fails with 504'),
  })
  .strict();

export const ExecResultSchema = z.object({
  exitCode: z.number().int().describe('the exit status (128+N when killed by signal N)'),
  stdout: z.string().describe('base64'),
  stderr: z.string().describe('base64'),
  truncated: z.boolean().describe('stdout or stderr went past 8 MiB and was cut there'),
  durationMs: z.number(),
});

export const ListQuery = z.object({ stats: z.enum(['true', 'false', '1', '0']).optional() }).strict();
export const DeleteQuery = z.object({ force: z.enum(['true', 'false', '1', '0']).optional() }).strict();

export const VmStatsSchema = z.object({
  instret: z.number(),
  vcpusOnline: z.number().describe('harts the guest has running (SBI HSM)'),
  cpuPercent: z.number().describe("percent of one host core the VM's threads really ran (kernel schedstat)"),
  stealPercent: z.number().describe('percent of the time they waited runnable for a host core'),
  cpuTimeSeconds: z.number().describe('CPU time since the VM started'),
  stealSeconds: z.number().describe('runnable-but-waiting time since the VM started'),
  capUsePercent: z.number().nullable().describe('cpuPercent as a share of the cap in force'),
  instructionsPerSecond: z.number(),
  residentBytes: z.number().describe('host memory the VM holds: guest RAM + decode caches + worker heap'),
  guestRamBytes: z.number().describe('guest RAM chunks allocated on the host'),
  decodeCacheBytes: z.number().describe("the harts' decoded-instruction pages"),
  workerHeapBytes: z.number().describe("the VM worker isolate's V8 heap"),
  memoryBytes: z.number(),
  balloonBytes: z.number(),
  balloonTargetBytes: z.number(),
  balloonDeflateOnOom: z.boolean().describe('the guest may take its balloon back when it runs out of memory'),
  guestStatsUpdates: z.number().describe('balloon statistics reports received'),
  guestTotalBytes: z.number().nullable(),
  guestFreeBytes: z.number().nullable(),
  guestAvailableBytes: z.number().nullable().describe("the guest's MemAvailable"),
  guestCachesBytes: z.number().nullable(),
  guestMajorFaults: z.number().nullable(),
  guestMinorFaults: z.number().nullable(),
  guestSwapInBytes: z.number().nullable(),
  guestSwapOutBytes: z.number().nullable(),
  guestOomKills: z.number().nullable().describe('null: the guest kernel does not report it (before Linux 6.12)'),
  diskReadBytes: z.number(),
  diskWriteBytes: z.number(),
  diskReadOps: z.number(),
  diskWriteOps: z.number(),
  netRxBytes: z.number(),
  netTxBytes: z.number(),
  netRxPackets: z.number(),
  netTxPackets: z.number(),
  nics: z.array(
    z.object({
      mac: z.string(),
      rxBytes: z.number(),
      rxPackets: z.number(),
      rxDropped: z.number(),
      txBytes: z.number(),
      txPackets: z.number(),
      txDropped: z.number(),
    }),
  ),
  uptimeSeconds: z.number(),
});

export const VmViewSchema = z.object({
  name: VmName,
  uuid: z.string(),
  state: z.enum(VM_STATES),
  stateReason: z.string().optional(),
  autostart: z.boolean(),
  image: z.string().optional(),
  bootMarker: z.string().optional(),
  createdAt: z.string(),
  updatedAt: z.string(),
  config: z.object({}).passthrough().describe('the VM configuration (src/vm/config.ts VmConfig)'),
  addresses: z.array(z.object({ nic: z.number(), network: z.string(), mac: z.string(), ip: z.string().optional() })),
  stats: VmStatsSchema.nullable(),
  cpu: z.object({
    weight: z.number(),
    capPercent: z.number().nullable(),
    cpuset: z.array(z.number()).nullable(),
    burst: z.object({ capPercent: z.number(), seconds: z.number() }).nullable(),
    mechanism: z.string(),
    effectiveCapPercent: z.number().nullable(),
    bursting: z.boolean(),
    threads: z.array(z.number()),
    perCoreNs: z.array(z.number()).nullable(),
  }),
  memory: z.object({
    maxMiB: z.number(),
    minMiB: z.number().describe('the floor in force'),
    weight: z.number(),
    targetMiB: z.number().nullable(),
    sizeMiB: z.number().nullable().describe('what the balloon gives the guest now'),
  }),
});

export const NetworkViewSchema = z.object({
  name: z.string(),
  mode: z.enum(['nat', 'isolated']),
  subnet: z.string(),
  gateway: z.string().optional(),
  dns: z.string(),
  dnsHosts: z.record(z.string(), z.string()),
  createdAt: z.string(),
  running: z.boolean(),
  vms: z.array(z.string()),
  leases: z.array(z.object({ mac: z.string(), ip: z.string(), hostname: z.string().optional() })),
  stats: z.record(z.string(), z.unknown()).nullable(),
});

export const VmListSchema = z.object({ vms: z.array(VmViewSchema) });
export const ActionOutcomeSchema = z.object({ vm: VmViewSchema, forced: z.boolean().optional() });
export const DeletedSchema = z.object({ deleted: VmName });

export const ERROR_CODES = [
  'INVALID_REQUEST',
  'INVALID_JSON',
  'INVALID_NAME',
  'INVALID_PATH',
  'INVALID_CONFIG',
  'PATH_NOT_ALLOWED',
  'UNKNOWN_ACTION',
  'BODY_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'UNAUTHORIZED',
  'CSRF_REJECTED',
  'WEB_NOT_BUILT',
  'NOT_FOUND',
  'VM_NOT_FOUND',
  'IMAGE_NOT_FOUND',
  'IMAGE_EXISTS',
  'IMAGE_IN_USE',
  'VM_EXISTS',
  'INVALID_STATE',
  'VM_BUSY',
  'NETWORK_NOT_FOUND',
  'NETWORK_EXISTS',
  'NETWORK_IN_USE',
  'PORT_IN_USE',
  'AGENT_UNAVAILABLE',
  'EXEC_ABORTED',
  'EXEC_TIMEOUT',
  'ENGINE_ERROR',
  'STORAGE_ERROR',
  'SNAPSHOT_NOT_FOUND',
  'SNAPSHOT_EXISTS',
  'BAD_STATE_FILE',
  'MEMORY_BUDGET',
  'INTERNAL',
] as const;
export type ApiErrorCode = (typeof ERROR_CODES)[number];

export const ErrorSchema = z.object({ error: z.object({ code: z.enum(ERROR_CODES), message: z.string() }) });

const WarmPoolSchema = z.object({
  size: z.number().describe('items kept ready'),
  idle: z.number().describe('items ready now'),
  starting: z.boolean(),
  hits: z.number().describe('starts that took a ready item'),
  misses: z.number().describe('starts that found none ready'),
});

export const HostInfoSchema = z.object({
  hostname: z.string(),
  cpus: z.number(),
  cpuModel: z.string(),
  memoryBytes: z.number(),
  freeMemoryBytes: z.number(),
  loadAverage: z.array(z.number()),
  daemon: z.object({
    pid: z.number(),
    uptimeSeconds: z.number(),
    rssBytes: z.number(),
    heapUsedBytes: z.number(),
    engine: z.string(),
    version: z.string(),
    vmProcessUser: z.string().describe('which user VM processes run as (a uid of their own per VM under a root daemon)'),
    warmPool: WarmPoolSchema.nullable().describe(
      'VM workers (thread mode) or VM processes (process mode) kept started ahead of need: idle now, and starts that found one (hits) or none (misses); null when the daemon keeps none',
    ),
    networkWarmPool: WarmPoolSchema.nullable().describe(
      'network workers kept started ahead of need (a network starts in one with its first VM); null when none are kept',
    ),
  }),
  vms: z.object({ total: z.number(), byState: z.record(z.string(), z.number()) }),
  usage: z.object({ vcpus: z.number(), memoryBytes: z.number(), residentBytes: z.number(), cpuPercent: z.number() }),
  cpuControl: z.object({ mechanism: z.string(), detail: z.string(), skipped: z.array(z.string()) }),
  memory: z.object({
    budgetBytes: z.number(),
    overcommit: z.number(),
    commitLimitBytes: z.number(),
    committedBytes: z.number(),
    floorsBytes: z.number(),
    residentBytes: z.number(),
    headroomBytes: z.number(),
    policyTargetBytes: z.number(),
    measuredOverheadPerVmBytes: z
      .number()
      .nullable()
      .describe("the daemon's RSS beyond its RSS with no VM and the guests' RAM, per running VM (null: none running)"),
    vms: z.array(
      z.object({
        name: z.string(),
        maxBytes: z.number(),
        floorBytes: z.number(),
        sizeBytes: z.number().nullable(),
        residentBytes: z.number(),
        guestRamBytes: z.number(),
        overheadBytes: z.number().describe('decode caches + worker heap: the fixed cost of the VM'),
      }),
    ),
  }),
});

/** The first problem zod found, phrased for a person: "memoryMiB: Too big: expected number to be <=16384". */
export function describeZodError(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return 'invalid request';
  const where = issue.path.length ? issue.path.join('.') : 'body';
  return `${where}: ${issue.message}`;
}
