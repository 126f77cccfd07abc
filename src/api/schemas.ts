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

export const CreateVmBody = z
  .object({
    name: VmName,
    vcpus: z.number().int().min(1).max(MAX_CPUS).default(1),
    memoryMiB: z.number().int().min(MIN_MEMORY_MIB).max(MAX_MEMORY_MIB).default(256),
    image: ImageName.optional().describe("image to boot; 'default' when no kernel is given"),
    kernel: HostPath.optional(),
    initrd: HostPath.optional(),
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
  })
  .strict()
  .refine((b) => Object.keys(b).length > 0, 'nothing to update');

export const ActionName = z.enum(VM_ACTIONS);
export const ActionBody = z
  .object({
    timeoutSeconds: z
      .number()
      .int()
      .min(0)
      .max(600)
      .optional()
      .describe('shutdown: seconds to wait for the guest before forcing'),
  })
  .strict();

export const ListQuery = z.object({ stats: z.enum(['true', 'false', '1', '0']).optional() }).strict();
export const DeleteQuery = z.object({ force: z.enum(['true', 'false', '1', '0']).optional() }).strict();

export const VmStatsSchema = z.object({
  instret: z.number(),
  cpuPercent: z.number(),
  instructionsPerSecond: z.number(),
  residentBytes: z.number(),
  memoryBytes: z.number(),
  balloonBytes: z.number(),
  diskReadBytes: z.number(),
  diskWriteBytes: z.number(),
  diskReadOps: z.number(),
  diskWriteOps: z.number(),
  netRxBytes: z.number(),
  netTxBytes: z.number(),
  netRxPackets: z.number(),
  netTxPackets: z.number(),
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
  stats: VmStatsSchema.nullable(),
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
  'UNKNOWN_ACTION',
  'BODY_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'UNAUTHORIZED',
  'NOT_FOUND',
  'VM_NOT_FOUND',
  'IMAGE_NOT_FOUND',
  'IMAGE_EXISTS',
  'IMAGE_IN_USE',
  'VM_EXISTS',
  'INVALID_STATE',
  'VM_BUSY',
  'ENGINE_ERROR',
  'STORAGE_ERROR',
  'INTERNAL',
] as const;
export type ApiErrorCode = (typeof ERROR_CODES)[number];

export const ErrorSchema = z.object({ error: z.object({ code: z.enum(ERROR_CODES), message: z.string() }) });

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
  }),
  vms: z.object({ total: z.number(), byState: z.record(z.string(), z.number()) }),
  usage: z.object({ vcpus: z.number(), memoryBytes: z.number(), residentBytes: z.number(), cpuPercent: z.number() }),
});

/** The first problem zod found, phrased for a person: "memoryMiB: Too big: expected number to be <=16384". */
export function describeZodError(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return 'invalid request';
  const where = issue.path.length ? issue.path.join('.') : 'body';
  return `${where}: ${issue.message}`;
}
