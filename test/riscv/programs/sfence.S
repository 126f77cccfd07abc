/*
 * sfence.vma by address and by ASID (Sv39, satp.ASID = 5): a changed PTE becomes visible after the fence that
 * names its page, its superpage (through any 4 KiB slice of it) or its ASID, for loads and for fetches.
 * A second address space (ASID 6) checks that each ASID keeps its own entries across satp switches, and that
 * fences naming an ASID reach it whichever ASID is current.
 * Checks marked "selective" assert that an unrelated fence leaves a stale entry in place: hardware may keep
 * it, and keeping it is the point of a fence by address or ASID.
 */
#include "common.h"

#define ASID 5
#define SATP_SV39 (8 << 60)
/* a readable, writable leaf with A and D already set */
#define RW_LEAF (PTE_V | PTE_R | PTE_W | PTE_A | PTE_D)
/* load from addr into t3 and check it */
#define EXPECT_LOAD(addr, val, n) li t2, addr; ld t3, 0(t2); CHECK(t3, val, n)
/* the same from a loop hot enough to be translated: translated loads must see fences too */
#define EXPECT_LOAD_LOOP(addr, val, n) li t2, addr; li t4, 8; 98: ld t3, 0(t2); addi t4, t4, -1; bnez t4, 98b; CHECK(t3, val, n)

.text
main:
  /* Root: [1] -> l1, [2] = identity gigapage at 0x80000000 (code, data, tables). */
  MKPTE_RAW(root, 2, ((0x80000000 >> 12) << 10) | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D)
  MKPTE(root, 1, l1, PTE_V)
  MKPTE(l1, 0, l0, PTE_V)
  /* l1[1]: megapage 0x40200000 -> 0x80200000 */
  MKPTE_RAW(l1, 1, ((0x80200000 >> 12) << 10) | RW_LEAF)
  /* l0[0] -> pageA, l0[1] -> pageB, l0[2] -> code1 (execute-only) */
  MKPTE(l0, 0, pageA, RW_LEAF)
  MKPTE(l0, 1, pageB, RW_LEAF)
  MKPTE(l0, 2, code1, PTE_V | PTE_X | PTE_A)
  /* markers: pages A/B/C hold 0xA/0xB/0xC; slice 3 of each megapage target holds 0x11 / 0x22 */
  li t0, 0xA; la t1, pageA; sd t0, 0(t1)
  li t0, 0xB; la t1, pageB; sd t0, 0(t1)
  li t0, 0xC; la t1, pageC; sd t0, 0(t1)
  li t0, 0x11; li t1, 0x80203000; sd t0, 0(t1)
  li t0, 0x22; li t1, 0x80403000; sd t0, 0(t1)
  la t0, root
  srli t0, t0, 12
  li t1, SATP_SV39 | (ASID << 44)
  or t0, t0, t1
  csrw satp, t0
  csrr t1, satp
  bne t0, t1, asid_fail /* the ASID field is writable */
  sfence.vma
  MRET_TO(1, s_checks)

s_checks:
  /* fill the TLB: both 4 KiB pages, a slice of the megapage, and the code page */
  EXPECT_LOAD_LOOP(0x40000000, 0xA, 2)
  EXPECT_LOAD(0x40001000, 0xB, 3)
  EXPECT_LOAD(0x40203000, 0x11, 4)
  li t2, 0x40002000
  jalr ra, 0(t2)
  CHECK(a0, 1, 5)

  /* 1. by address: remap page 0 to C, fence page 0 */
  MKPTE(l0, 0, pageC, RW_LEAF)
  li t2, 0x40000000
  sfence.vma t2, zero
  EXPECT_LOAD_LOOP(0x40000000, 0xC, 10)

  /* 2. selective: remap page 1 to C, fence page 0 only: page 1 still reads B */
  MKPTE(l0, 1, pageC, RW_LEAF)
  li t2, 0x40000000
  sfence.vma t2, zero
  EXPECT_LOAD(0x40001000, 0xB, 11)
  /* then the fence naming page 1 (with an offset inside it) makes C visible */
  li t2, 0x40001ff8
  sfence.vma t2, zero
  EXPECT_LOAD(0x40001000, 0xC, 12)

  /* 3. superpage: remap the megapage to 0x80400000 and fence a different 4 KiB slice of it */
  MKPTE_RAW(l1, 1, ((0x80400000 >> 12) << 10) | RW_LEAF)
  li t2, 0x40200000
  sfence.vma t2, zero
  EXPECT_LOAD(0x40203000, 0x22, 20)

  /* 4. by ASID (the superpage fence flushed everything, so page 0 is loaded again first): another ASID's
        fence is selective; our ASID's fence flushes */
  EXPECT_LOAD(0x40000000, 0xC, 30)
  MKPTE(l0, 0, pageA, RW_LEAF)
  li t0, 9
  sfence.vma zero, t0
  EXPECT_LOAD(0x40000000, 0xC, 31)
  li t0, ASID
  sfence.vma zero, t0
  EXPECT_LOAD(0x40000000, 0xA, 32)
  /* by address and ASID */
  EXPECT_LOAD(0x40001000, 0xC, 33)
  MKPTE(l0, 1, pageB, RW_LEAF)
  li t2, 0x40001000
  li t0, ASID
  sfence.vma t2, t0
  EXPECT_LOAD(0x40001000, 0xB, 34)

  /* 5. fetch: run code1 again (it is in the fetch TLB), remap its page to code2 and fence it: the new code runs */
  li t2, 0x40002000
  jalr ra, 0(t2)
  CHECK(a0, 1, 40)
  MKPTE(l0, 2, code2, PTE_V | PTE_X | PTE_A)
  li t2, 0x40002000
  sfence.vma t2, zero
  jalr ra, 0(t2)
  CHECK(a0, 2, 41)

  /* 6. a fence from M-mode with MPRV off still reaches S-mode translations */
  SET_MRESUME(m_part)
  ecall
m_part:
  MKPTE(l0, 0, pageB, RW_LEAF)
  li t2, 0x40000000
  sfence.vma t2, zero
  MRET_TO(1, s_last)
s_last:
  EXPECT_LOAD(0x40000000, 0xB, 50)

  /* 7. a second address space, ASID 6, with its own tables: page 0 -> pageC, page 1 -> pageC.
        s4 = satp for ASID 5, s5 = satp for ASID 6. */
  MKPTE_RAW(root6, 2, ((0x80000000 >> 12) << 10) | PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D)
  MKPTE(root6, 1, l1b, PTE_V)
  MKPTE(l1b, 0, l0b, PTE_V)
  MKPTE(l0b, 0, pageC, RW_LEAF)
  MKPTE(l0b, 1, pageC, RW_LEAF)
  la s4, root
  srli s4, s4, 12
  li t0, SATP_SV39 | (ASID << 44)
  or s4, s4, t0
  la s5, root6
  srli s5, s5, 12
  li t0, SATP_SV39 | (6 << 44)
  or s5, s5, t0
  csrw satp, s5
  EXPECT_LOAD(0x40000000, 0xC, 60)
  csrw satp, s4
  EXPECT_LOAD(0x40000000, 0xB, 61)
  /* selective: ASID 5's entry survives a switch to ASID 6 and back (its PTE changed, with no fence) */
  MKPTE(l0, 0, pageA, RW_LEAF)
  csrw satp, s5
  EXPECT_LOAD(0x40001000, 0xC, 62)
  csrw satp, s4
  EXPECT_LOAD(0x40000000, 0xB, 63)
  /* a fence of ASID 5 issued while ASID 6 is current reaches ASID 5 */
  csrw satp, s5
  li t0, ASID
  sfence.vma zero, t0
  csrw satp, s4
  EXPECT_LOAD(0x40000000, 0xA, 64)
  /* ... and so does a page fence naming ASID 5 */
  MKPTE(l0, 0, pageB, RW_LEAF)
  csrw satp, s5
  li t2, 0x40000000
  li t0, ASID
  sfence.vma t2, t0
  csrw satp, s4
  EXPECT_LOAD(0x40000000, 0xB, 65)
  /* ... and a full fence */
  MKPTE(l0, 0, pageA, RW_LEAF)
  csrw satp, s5
  sfence.vma
  csrw satp, s4
  EXPECT_LOAD(0x40000000, 0xA, 66)
  /* a fence of ASID 5 leaves ASID 6 alone (selective): change ASID 6's page 1 and come back */
  csrw satp, s5
  EXPECT_LOAD(0x40001000, 0xC, 67)
  MKPTE(l0b, 1, pageA, RW_LEAF)
  li t0, ASID
  sfence.vma zero, t0
  EXPECT_LOAD(0x40001000, 0xC, 68)
  li t0, 6
  sfence.vma zero, t0
  EXPECT_LOAD(0x40001000, 0xA, 69)

  /* 8. AMOs and LR/SC translate through the same entries, and fences reach them */
  li t2, 0x40001000
  li t0, 5
  amoadd.d t1, t0, (t2)
  CHECK(t1, 0xA, 70)
  MKPTE(l0b, 1, pageB, RW_LEAF)
  li t2, 0x40001000
  sfence.vma t2, zero
  lr.d t1, (t2)
  CHECK(t1, 0xB, 71)
  li t0, 0x77
  sc.d t3, t0, (t2)
  CHECK(t3, 0, 72)
  la t1, pageB
  ld t1, 0(t1)
  CHECK(t1, 0x77, 73)
  la t1, pageA
  ld t1, 0(t1)
  CHECK(t1, 0xF, 74)
  j pass

asid_fail:
  li a0, 1
  j fail

.data
.align 12
root: .skip 4096
l1: .skip 4096
l0: .skip 4096
pageA: .skip 4096
pageB: .skip 4096
pageC: .skip 4096
root6: .skip 4096
l1b: .skip 4096
l0b: .skip 4096
/* position-independent leaf functions, one per page */
.text
.align 12
code1:
  li a0, 1
  ret
.align 12
code2:
  li a0, 2
  ret
.align 12
