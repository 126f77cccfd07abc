/** Why a machine state file was refused: one code per failure, and the section it failed on. */
export type SnapshotErrorCode =
  | 'BAD_MAGIC' // not a typevisor machine state file
  | 'UNSUPPORTED_VERSION' // a format version this build does not read
  | 'TRUNCATED' // the file ends before a section or the trailer
  | 'BAD_SECTION_HEADER' // a section header is malformed or fails its own checksum
  | 'CHECKSUM_MISMATCH' // a section's (or RAM chunk's) contents fail their checksum
  | 'BAD_VALUE' // a section's contents do not decode, or do not have the shape the device expects
  | 'MISSING_SECTION' // a section the machine needs is absent
  | 'INCOMPATIBLE' // the file describes another engine, architecture or board shape
  | 'NOT_SUPPORTED'; // this machine cannot be saved (e.g. a hart without state export)

export class SnapshotError extends Error {
  constructor(
    readonly code: SnapshotErrorCode,
    /** The section the failure is about ('file' for the preamble and trailer). */
    readonly section: string,
    detail: string,
  ) {
    super(`machine state ${section === 'file' ? 'file' : `section '${section}'`}: ${detail} (${code})`);
    this.name = 'SnapshotError';
  }
}
