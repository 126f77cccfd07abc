/** CSR numbers, status/interrupt bits and trap causes, named as in the privileged spec 1.12. */

// Unprivileged
export const CSR_FFLAGS = 0x001;
export const CSR_FRM = 0x002;
export const CSR_FCSR = 0x003;
export const CSR_CYCLE = 0xc00;
export const CSR_TIME = 0xc01;
export const CSR_INSTRET = 0xc02;
// Supervisor
export const CSR_SSTATUS = 0x100;
export const CSR_SIE = 0x104;
export const CSR_STVEC = 0x105;
export const CSR_SCOUNTEREN = 0x106;
export const CSR_SENVCFG = 0x10a;
export const CSR_SSCRATCH = 0x140;
export const CSR_SEPC = 0x141;
export const CSR_SCAUSE = 0x142;
export const CSR_STVAL = 0x143;
export const CSR_SIP = 0x144;
export const CSR_STIMECMP = 0x14d; // Sstc
export const CSR_SATP = 0x180;
// Machine
export const CSR_MVENDORID = 0xf11;
export const CSR_MARCHID = 0xf12;
export const CSR_MIMPID = 0xf13;
export const CSR_MHARTID = 0xf14;
export const CSR_MCONFIGPTR = 0xf15;
export const CSR_MSTATUS = 0x300;
export const CSR_MISA = 0x301;
export const CSR_MEDELEG = 0x302;
export const CSR_MIDELEG = 0x303;
export const CSR_MIE = 0x304;
export const CSR_MTVEC = 0x305;
export const CSR_MCOUNTEREN = 0x306;
export const CSR_MENVCFG = 0x30a;
export const CSR_MCOUNTINHIBIT = 0x320;
export const CSR_MSCRATCH = 0x340;
export const CSR_MEPC = 0x341;
export const CSR_MCAUSE = 0x342;
export const CSR_MTVAL = 0x343;
export const CSR_MIP = 0x344;
export const CSR_MTINST = 0x34a;
export const CSR_MTVAL2 = 0x34b;
export const CSR_PMPCFG0 = 0x3a0;
export const CSR_PMPCFG2 = 0x3a2;
export const CSR_PMPADDR0 = 0x3b0;
export const CSR_MCYCLE = 0xb00;
export const CSR_MINSTRET = 0xb02;
export const CSR_MSECCFG = 0x747;

// mstatus / sstatus
export const MSTATUS_SIE = 1 << 1; // supervisor interrupt enable
export const MSTATUS_MIE = 1 << 3; // machine interrupt enable
export const MSTATUS_SPIE = 1 << 5; // SIE before the trap
export const MSTATUS_UBE = 1 << 6; // user big-endian (hardwired 0)
export const MSTATUS_MPIE = 1 << 7; // MIE before the trap
export const MSTATUS_SPP = 1 << 8; // privilege before an S trap (1 bit)
export const MSTATUS_VS = 3 << 9; // vector state (hardwired 0: no V)
export const MSTATUS_MPP = 3 << 11; // privilege before an M trap
export const MSTATUS_MPP_SHIFT = 11;
export const MSTATUS_FS = 3 << 13; // FP state: Off, Initial, Clean, Dirty
export const MSTATUS_FS_SHIFT = 13;
export const MSTATUS_XS = 3 << 15; // extension state (hardwired 0)
export const MSTATUS_MPRV = 1 << 17; // M loads/stores use MPP's translation
export const MSTATUS_SUM = 1 << 18; // S may access U pages
export const MSTATUS_MXR = 1 << 19; // loads from executable pages succeed
export const MSTATUS_TVM = 1 << 20; // trap satp/sfence.vma in S
export const MSTATUS_TW = 1 << 21; // trap WFI below M
export const MSTATUS_TSR = 1 << 22; // trap sret in S
/** High word of mstatus: UXL = SXL = 2 (64-bit), read-only; SD is bit 31 of the high word (bit 63). */
export const MSTATUS_HI_UXL_SXL = 0x0000000a;
export const MSTATUS_HI_SD = 1 << 31;

export const FS_OFF = 0;
export const FS_INITIAL = 1;
export const FS_CLEAN = 2;
export const FS_DIRTY = 3;

// mip / mie bits
export const IRQ_SSI = 1; // supervisor software interrupt
export const IRQ_MSI = 3; // machine software interrupt
export const IRQ_STI = 5; // supervisor timer interrupt
export const IRQ_MTI = 7; // machine timer interrupt
export const IRQ_SEI = 9; // supervisor external interrupt
export const IRQ_MEI = 11; // machine external interrupt
export const MIP_SSIP = 1 << IRQ_SSI;
export const MIP_MSIP = 1 << IRQ_MSI;
export const MIP_STIP = 1 << IRQ_STI;
export const MIP_MTIP = 1 << IRQ_MTI;
export const MIP_SEIP = 1 << IRQ_SEI;
export const MIP_MEIP = 1 << IRQ_MEI;

// menvcfg (high word bit 31 = STCE, bit 63)
export const MENVCFG_HI_STCE = 1 << 31; // Sstc enable
export const ENVCFG_FIOM = 1 << 0;

// Privilege levels
export const PRV_U = 0;
export const PRV_S = 1;
export const PRV_M = 3;

// Exception causes
export const CAUSE_MISALIGNED_FETCH = 0;
export const CAUSE_FETCH_ACCESS = 1;
export const CAUSE_ILLEGAL_INSTRUCTION = 2;
export const CAUSE_BREAKPOINT = 3;
export const CAUSE_MISALIGNED_LOAD = 4;
export const CAUSE_LOAD_ACCESS = 5;
export const CAUSE_MISALIGNED_STORE = 6;
export const CAUSE_STORE_ACCESS = 7;
export const CAUSE_USER_ECALL = 8;
export const CAUSE_SUPERVISOR_ECALL = 9;
export const CAUSE_MACHINE_ECALL = 11;
export const CAUSE_FETCH_PAGE_FAULT = 12;
export const CAUSE_LOAD_PAGE_FAULT = 13;
export const CAUSE_STORE_PAGE_FAULT = 15;

// satp modes
export const SATP_MODE_BARE = 0;
export const SATP_MODE_SV39 = 8;
export const SATP_MODE_SV48 = 9;

/** misa: MXL = 2 (RV64) in bits 63:62, extensions A C D F I M S U. */
export const MISA_EXTENSIONS = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20);
export const MISA_HI = 0x80000000 | 0; // MXL=2 in bits 63:62 of the high word
/**
 * The ISA string matching what this hart implements, for the device tree. Zba/Zbb/Zbs are complete and
 * differential-tested, but Linux 6.1 does not use them; the board may advertise the shorter ISA_STRING_BASE.
 */
export const ISA_STRING = 'rv64imafdc_zicntr_zicsr_zifencei_zba_zbb_zbs_sstc';
export const ISA_STRING_BASE = 'rv64imafdc_zicntr_zicsr_zifencei_sstc';
