/* Sv39 and Sv48: walks, A/D updates, faults at every level, superpages, SUM/MXR/MPRV, sfence.vma. */
#include "common.h"

/* load expecting a page fault (cause 13) with tval = addr */
#define EXPECT_LOAD_FAULT(addr, n) li t2, addr; ld t3, 0(t2); CHECK_MREC(REC_CAUSE, 13, n); CHECK_MREC(REC_TVAL, addr, n)

.text
main:
  /* Build the Sv39 tree. Root: [0] invalid, [1] -> l1, [2] = identity gigapage at 0x80000000. */
  MKPTE_RAW(root39, 2, ((0x80000000 >> 12) << 10) | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D)
  MKPTE(root39, 1, l1, PTE_V)
  /* [3] = a user alias of the same gigapage at 0xc0000000, so U-mode code can run */
  MKPTE_RAW(root39, 3, ((0x80000000 >> 12) << 10) | PTE_V | PTE_R | PTE_W | PTE_X | PTE_U | PTE_A | PTE_D)
  MKPTE(l1, 0, l0, PTE_V)
  /* l1[1] invalid; l1[2] misaligned megapage; l1[3] megapage -> 0x80200000 */
  MKPTE_RAW(l1, 2, (((0x80200000 >> 12) + 1) << 10) | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D)
  MKPTE_RAW(l1, 3, ((0x80200000 >> 12) << 10) | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D)
  /* Sv48 root: [0] -> the Sv39 root used as a level-2 table */
  MKPTE(root48, 0, root39, PTE_V)

  /* satp with an unsupported mode (Sv57 = 10) is ignored entirely */
  li t0, (10 << 60) | 0x12345
  csrw satp, t0
  csrr t1, satp
  CHECK(t1, 0, 1)

  la s0, root39
  srli s0, s0, 12
  li t0, (8 << 60)
  or s0, s0, t0
  li s1, 0x4000000000          /* not canonical in Sv39 */
  jal ra, vm_round
  la s0, root48
  srli s0, s0, 12
  li t0, (9 << 60)
  or s0, s0, t0
  li s1, 0x800000000000        /* not canonical in Sv48 */
  jal ra, vm_round
  /* Sv48 only: a fault at the top level (vpn3 = 1 is invalid) */
  csrw satp, s0
  sfence.vma
  MRET_TO(1, s48)
s48:
  EXPECT_LOAD_FAULT(0x8000000000, 60)
  SET_MRESUME(done48)
  ecall
done48:
  j pass

/* One round of checks with satp = s0 and non-canonical address s1. Returns in M-mode via ra. */
vm_round:
  mv s2, ra
  /* leaves under l0: reset A/D state for each round */
  MKPTE(l0, 0, page0, PTE_V | PTE_R | PTE_W)
  MKPTE(l0, 1, page1, PTE_V | PTE_R | PTE_A)
  MKPTE_RAW(l0, 2, 0)
  MKPTE(l0, 3, page3, PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D)
  MKPTE(l0, 4, page4, PTE_V | PTE_X | PTE_A)
  MKPTE(l0, 5, page4, PTE_V | PTE_W | PTE_A | PTE_D)
  MKPTE(l0, 6, page4, PTE_V | PTE_R | PTE_A)
  la t1, l0
  ld t0, 48(t1)
  li t2, 1
  slli t2, t2, 54
  or t0, t0, t2
  sd t0, 48(t1)
  li t0, 0x1111
  la t1, page0
  sd t0, 0(t1)
  li t0, 0x2222
  la t1, page1
  sd t0, 0(t1)
  csrw satp, s0
  sfence.vma
  li t0, (1 << 18) | (1 << 19)
  csrc mstatus, t0
  MRET_TO(1, s_checks)
s_checks:
  /* 1. load from a page with A=0: succeeds, sets A but not D */
  li t2, 0x40000000
  ld t3, 0(t2)
  CHECK(t3, 0x1111, 2)
  la t1, l0
  ld t0, 0(t1)
  andi t0, t0, 0xc0
  CHECK(t0, 0x40, 3)
  /* 2. store sets D; the data lands in page0 */
  li t0, 0x3333
  sd t0, 8(t2)
  la t1, l0
  ld t0, 0(t1)
  andi t0, t0, 0xc0
  CHECK(t0, 0xc0, 4)
  la t1, page0
  ld t0, 8(t1)
  CHECK(t0, 0x3333, 5)
  /* 3. store to a read-only page: store page fault (15) */
  li t2, 0x40001008
  sd t0, 0(t2)
  CHECK_MREC(REC_CAUSE, 15, 6)
  CHECK_MREC(REC_TVAL, 0x40001008, 7)
  /* AMO to a read-only page also faults as a store */
  li t2, 0x40001000
  amoadd.d t0, t0, (t2)
  CHECK_MREC(REC_CAUSE, 15, 8)
  /* 4. invalid leaf at level 0 */
  EXPECT_LOAD_FAULT(0x40002000, 9)
  /* 5. U page from S: fault without SUM, fine with SUM; never executable from S */
  EXPECT_LOAD_FAULT(0x40003000, 10)
  li t0, (1 << 18)
  csrs sstatus, t0
  li t2, 0x40003000
  ld t3, 0(t2)
  CHECK_MREC(REC_CAUSE, 13, 11) /* unchanged record: no new fault */
  la t6, m_rec; ld t6, REC_COUNT(t6); mv s3, t6
  ld t3, 0(t2)
  la t6, m_rec; ld t6, REC_COUNT(t6); bne t6, s3, vfail
  li t0, (1 << 18)
  csrc sstatus, t0
  /* 6. execute-only page: load faults unless MXR */
  EXPECT_LOAD_FAULT(0x40004000, 12)
  li t0, (1 << 19)
  csrs sstatus, t0
  la t6, m_rec; ld t6, REC_COUNT(t6); mv s3, t6
  li t2, 0x40004000
  ld t3, 0(t2)
  la t6, m_rec; ld t6, REC_COUNT(t6); bne t6, s3, vfail
  li t0, (1 << 19)
  csrc sstatus, t0
  /* 7. W without R is reserved; 8. reserved bit 54 set */
  EXPECT_LOAD_FAULT(0x40005000, 13)
  EXPECT_LOAD_FAULT(0x40006000, 14)
  /* 9. invalid entry at level 1; 10. misaligned megapage; 11. invalid root entry */
  EXPECT_LOAD_FAULT(0x40200000, 15)
  EXPECT_LOAD_FAULT(0x40400010, 16)
  EXPECT_LOAD_FAULT(0x00001000, 17)
  /* 12. megapage maps 0x40600000 -> 0x80200000 */
  li t2, 0x40600010
  li t0, 0x4444
  sd t0, 0(t2)
  li t1, 0x80200010
  ld t3, 0(t1)
  CHECK(t3, 0x4444, 18)
  /* 13. non-canonical address */
  ld t3, 0(s1)
  CHECK_MREC(REC_CAUSE, 13, 19)
  la t6, m_rec; ld t6, REC_TVAL(t6); bne t6, s1, vfail
  /* 14. fetch page fault: cause 12, tval = epc = target */
  SET_MRESUME(fetch_back)
  li t2, 0x40002000
  jr t2
fetch_back:
  CHECK_MREC(REC_CAUSE, 12, 20)
  CHECK_MREC(REC_TVAL, 0x40002000, 21)
  CHECK_MREC(REC_EPC, 0x40002000, 22)
  MRET_TO(1, s_checks2)
s_checks2:
  /* 15. sfence.vma makes a changed PTE visible */
  li t2, 0x40000000
  ld t3, 0(t2)
  MKPTE(l0, 0, page1, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D)
  li t2, 0x40000000
  sfence.vma t2, zero
  ld t3, 0(t2)
  CHECK(t3, 0x2222, 23)
  /* 16. U mode: U page ok, S page faults */
  li t0, (1 << 8)
  csrc sstatus, t0
  la t0, u_checks
  li t1, 0x40000000
  add t0, t0, t1
  csrw sepc, t0
  sret
u_checks:
  /* running at the 0xc0000000 user alias: pc-relative addresses land in the alias too */
  la t6, m_rec; ld t6, REC_COUNT(t6); mv s3, t6
  li t2, 0x40003000
  ld t3, 0(t2)
  la t6, m_rec; ld t6, REC_COUNT(t6); bne t6, s3, vfail_u
  EXPECT_LOAD_FAULT(0x40000000, 24)
  la t6, m_checks_ptr; ld t6, 0(t6); la s9, m_resume; sd t6, 0(s9)
  ecall
vfail_u:
  ecall
m_checks:
  /* 17. MPRV with MPP = S: M-mode loads go through the page tables */
  li t0, (3 << 11)
  csrc mstatus, t0
  li t0, (1 << 11) | (1 << 17)
  csrs mstatus, t0
  li t2, 0x40000000
  ld t3, 0(t2)
  li t0, (1 << 17)
  csrc mstatus, t0
  CHECK(t3, 0x2222, 25)
  /* MPRV does not affect fetch: we are still running from identity-mapped physical addresses */
  csrw satp, zero
  sfence.vma
  jr s2

vfail:
  li a0, 98
  j fail

.data
m_checks_ptr: .dword m_checks
.align 12
root39: .skip 4096
root48: .skip 4096
l1: .skip 4096
l0: .skip 4096
page0: .skip 4096
page1: .skip 4096
page3: .skip 4096
page4: .skip 4096
