/*
 * Shared scaffolding for the bare-metal privileged tests: HTIF tohost, PASS/FAIL, and recording trap
 * handlers for M and S mode. All code is assembled without RVC so every faulting instruction is 4 bytes.
 *
 * Register conventions: s10/s11 belong to the trap handlers, t6 to the CHECK macros.
 * M handler: records mcause/mepc/mtval/mstatus in m_rec; then if m_resume is non-zero, returns to it in
 * M-mode (and clears it); else for an interrupt disables mie and returns to mepc; else skips the instruction.
 * S handler: the same with s_rec/s_resume, returning to S-mode.
 */
/* Page-table entry bits (privileged spec, Sv39/Sv48). */
#define PTE_V 0x01
#define PTE_R 0x02
#define PTE_W 0x04
#define PTE_X 0x08
#define PTE_U 0x10
#define PTE_G 0x20
#define PTE_A 0x40
#define PTE_D 0x80
/* table[index] = PTE pointing at label's page with flags */
#define MKPTE(table, index, label, flags) la t0, label; srli t0, t0, 12; slli t0, t0, 10; ori t0, t0, flags; la t1, table; sd t0, (index * 8)(t1)
#define MKPTE_RAW(table, index, value) li t0, value; la t1, table; sd t0, (index * 8)(t1)

#define CSR_STIMECMP 0x14d
#define CSR_MENVCFG 0x30a

#define CHECK(reg, val, n) li t6, val; beq reg, t6, 99f; li a0, n; j fail; 99:
#define CHECK_MREC(off, val, n) la t6, m_rec; ld t6, off(t6); li s9, val; beq t6, s9, 99f; li a0, n; j fail; 99:
#define CHECK_SREC(off, val, n) la t6, s_rec; ld t6, off(t6); li s9, val; beq t6, s9, 99f; li a0, n; j fail; 99:
/* Data for a loop of loads through pointers: `seven` holds 7 and `ptrs` 200 pointers to it, except entry 150, which
   points at 0x1000 (neither RAM nor a device: an access fault) */
#define POINTERS_WITH_A_HOLE seven: .dword 7; ptrs: .rept 150; .dword seven; .endr; .dword 0x1000; .rept 49; .dword seven; .endr
/* The only M-mode trap so far was `cause` with `tval` at `label` (failure codes n to n + 3) */
#define CHECK_ONE_MTRAP(cause, tval, label, n) CHECK_MREC(REC_COUNT, 1, n); CHECK_MREC(REC_CAUSE, cause, n + 1); CHECK_MREC(REC_TVAL, tval, n + 2); la t0, label; la t6, m_rec; ld t6, REC_EPC(t6); beq t0, t6, 97f; li a0, n + 3; j fail; 97:
#define REC_CAUSE 0
#define REC_EPC 8
#define REC_TVAL 16
#define REC_STATUS 24
#define REC_COUNT 32
#define SET_MRESUME(label) la t6, label; la s9, m_resume; sd t6, 0(s9)
#define SET_SRESUME(label) la t6, label; la s9, s_resume; sd t6, 0(s9)
/* Enter S (or U) mode at label with mret. */
#define MRET_TO(mode, label) li t6, (3 << 11); csrc mstatus, t6; li t6, (mode << 11); csrs mstatus, t6; la t6, label; csrw mepc, t6; mret

.option norvc
.option norelax
.option nopic

.section .tohost, "aw", @progbits
.align 6
.globl tohost
tohost: .dword 0
.align 6
.globl fromhost
fromhost: .dword 0

.section .text.init, "ax", @progbits
.globl _start
_start:
  la t0, mtrap
  csrw mtvec, t0
  la t0, strap
  csrw stvec, t0
  la sp, stack_top
  j main

.globl pass
pass:
  li t0, 1
  la t1, tohost
  sd t0, 0(t1)
  /* wfi: the hart stops here (unless an interrupt is enabled and pending), so every engine ends on the same count */
1: wfi
  j 1b

.globl fail
fail:
  slli a0, a0, 1
  ori a0, a0, 1
  la t1, tohost
  sd a0, 0(t1)
1: wfi
  j 1b

.align 4
mtrap:
  la s11, m_rec
  csrr s10, mcause
  sd s10, REC_CAUSE(s11)
  csrr s10, mepc
  sd s10, REC_EPC(s11)
  csrr s10, mtval
  sd s10, REC_TVAL(s11)
  csrr s10, mstatus
  sd s10, REC_STATUS(s11)
  ld s10, REC_COUNT(s11)
  addi s10, s10, 1
  sd s10, REC_COUNT(s11)
  la s11, m_resume
  ld s10, 0(s11)
  beqz s10, 1f
  sd zero, 0(s11)
  csrw mepc, s10
  li s11, (3 << 11)
  csrs mstatus, s11
  mret
1:
  csrr s10, mcause
  bgez s10, 2f
  csrw mie, zero
  mret
2:
  csrr s10, mepc
  addi s10, s10, 4
  csrw mepc, s10
  mret

.align 4
strap:
  la s11, s_rec
  csrr s10, scause
  sd s10, REC_CAUSE(s11)
  csrr s10, sepc
  sd s10, REC_EPC(s11)
  csrr s10, stval
  sd s10, REC_TVAL(s11)
  csrr s10, sstatus
  sd s10, REC_STATUS(s11)
  ld s10, REC_COUNT(s11)
  addi s10, s10, 1
  sd s10, REC_COUNT(s11)
  la s11, s_resume
  ld s10, 0(s11)
  beqz s10, 1f
  sd zero, 0(s11)
  csrw sepc, s10
  li s11, (1 << 8)
  csrs sstatus, s11
  sret
1:
  csrr s10, scause
  bgez s10, 2f
  csrw sie, zero
  sret
2:
  csrr s10, sepc
  addi s10, s10, 4
  csrw sepc, s10
  sret

.data
.align 3
.globl m_rec
m_rec: .dword 0, 0, 0, 0, 0
.globl s_rec
s_rec: .dword 0, 0, 0, 0, 0
m_resume: .dword 0
s_resume: .dword 0
.bss
.align 12
stack: .skip 4096
stack_top:
.text
