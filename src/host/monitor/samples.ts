/**
 * One monitoring sample per VM and per host each second: named fields, so later policies (memory) can add
 * theirs. Rates are per second over the sample interval.
 */
export interface VmSample {
  /** ms since the epoch. */
  t: number;
  state: string;
  cpuPercent: number;
  stealPercent: number;
  instructionsPerSecond: number;
  /** The cap in force (burst included), null when uncapped. */
  capPercent: number | null;
  weight: number;
  residentBytes: number;
  /** Decode caches + worker heap (residentBytes minus guest RAM). */
  overheadBytes: number;
  balloonBytes: number;
  /** Guest figures from its balloon statistics (null until reported). */
  guestAvailableBytes: number | null;
  guestFreeBytes: number | null;
  guestCachesBytes: number | null;
  guestMajorFaults: number | null;
  guestMinorFaults: number | null;
  guestSwapInBytes: number | null;
  guestSwapOutBytes: number | null;
  guestOomKills: number | null;
  diskReadBytesPerSecond: number;
  diskWriteBytesPerSecond: number;
  netRxBytesPerSecond: number;
  netTxBytesPerSecond: number;
}

export interface HostSample {
  t: number;
  /** Busy share of all cores (100 = one core). */
  cpuPercent: number;
  /** Idle capacity in cores over the interval. */
  idleCores: number;
  /** Sum of the VMs' CPU. */
  vmCpuPercent: number;
  vmStealPercent: number;
  memoryUsedBytes: number;
  vmResidentBytes: number;
  diskReadBytesPerSecond: number;
  diskWriteBytesPerSecond: number;
  netRxBytesPerSecond: number;
  netTxBytesPerSecond: number;
}

/** Seconds of history kept (at 1 s resolution): 15 minutes. */
export const HISTORY_SECONDS = 900;
export const SAMPLE_INTERVAL_MS = 1000;
