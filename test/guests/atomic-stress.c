/*
 * Guest-side stress of RISC-V atomics across harts: T threads each increment three shared counters N times,
 * a 64-bit one with __atomic_fetch_add (amoadd.d), a 64-bit one with an explicit lr.d/sc.d retry loop, and a
 * 32-bit one with amoadd.w. On a machine whose atomics really are atomic across CPUs every total is exactly
 * T * N; a lost increment shows as FAIL.
 *
 * usage: atomic-stress THREADS ITERATIONS
 * prints: ATOMIC-STRESS amoadd=<n> lrsc=<n> amoadd_w=<n> expected=<n> OK|FAIL
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#if !defined(__riscv) || __riscv_xlen != 64
#error "atomic-stress is an RV64 program (its lr.d/sc.d loop is RISC-V assembly)"
#endif

#define MAX_THREADS 256

/* Each counter on its own cache line, so the three kinds contend only with themselves. */
static struct {
  _Alignas(64) volatile uint64_t amoadd;
  _Alignas(64) volatile uint64_t lrsc;
  _Alignas(64) volatile uint32_t amoadd_w;
  _Alignas(64) volatile int start;
} shared;

static long iterations;

static void lrsc_increment(volatile uint64_t *p) {
  uint64_t tmp;
  int failed;
  __asm__ volatile("1: lr.d %0, (%2)\n"
                   "   addi %0, %0, 1\n"
                   "   sc.d %1, %0, (%2)\n"
                   "   bnez %1, 1b\n"
                   : "=&r"(tmp), "=&r"(failed)
                   : "r"(p)
                   : "memory");
}

static void *worker(void *arg) {
  (void)arg;
  /* Start together, so the threads really contend. */
  while (!__atomic_load_n(&shared.start, __ATOMIC_ACQUIRE)) {
  }
  for (long i = 0; i < iterations; i++) {
    __atomic_fetch_add(&shared.amoadd, 1, __ATOMIC_RELAXED);
    lrsc_increment(&shared.lrsc);
    __atomic_fetch_add(&shared.amoadd_w, 1, __ATOMIC_RELAXED);
  }
  return NULL;
}

static long parse_count(const char *s, const char *what, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < 1 || v > max) {
    fprintf(stderr, "atomic-stress: %s must be an integer in 1..%ld, got '%s'\n", what, max, s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: atomic-stress THREADS ITERATIONS\n");
    return 2;
  }
  long threads = parse_count(argv[1], "THREADS", MAX_THREADS);
  /* The 32-bit counter must not wrap. */
  iterations = parse_count(argv[2], "ITERATIONS", UINT32_MAX / threads);
  pthread_t ids[MAX_THREADS];
  for (long t = 0; t < threads; t++) {
    int err = pthread_create(&ids[t], NULL, worker, NULL);
    if (err != 0) {
      fprintf(stderr, "atomic-stress: pthread_create: error %d\n", err);
      return 1;
    }
  }
  __atomic_store_n(&shared.start, 1, __ATOMIC_RELEASE);
  for (long t = 0; t < threads; t++) pthread_join(ids[t], NULL);
  uint64_t expected = (uint64_t)threads * (uint64_t)iterations;
  int ok = shared.amoadd == expected && shared.lrsc == expected && shared.amoadd_w == (uint32_t)expected;
  printf("ATOMIC-STRESS amoadd=%" PRIu64 " lrsc=%" PRIu64 " amoadd_w=%" PRIu32 " expected=%" PRIu64 " %s\n",
         (uint64_t)shared.amoadd, (uint64_t)shared.lrsc, (uint32_t)shared.amoadd_w, expected, ok ? "OK" : "FAIL");
  return ok ? 0 : 1;
}
