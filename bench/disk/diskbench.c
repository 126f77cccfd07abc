/*
 * In-guest disk benchmark for bench/disk: sequential 1 MiB and random 4 KiB reads and writes with O_DIRECT
 * (so the guest page cache does not hide the device), timed with CLOCK_MONOTONIC. Prints one line per test:
 *   RESULT <name> <bytes> <ops> <seconds>
 * usage: diskbench DEVICE SPAN_MIB SEQ_MIB RANDOM_OPS
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The real syscall, not the vDSO: the vDSO reads the time CSR from U-mode, which not every VMM allows yet. */
static double now(void) {
	struct timespec ts;
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t state = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { /* xorshift64: reproducible offsets in every run and every VMM */
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}

static void die(const char *what) {
	perror(what);
	exit(1);
}

int main(int argc, char **argv) {
	if (argc != 5) {
		fprintf(stderr, "usage: %s DEVICE SPAN_MIB SEQ_MIB RANDOM_OPS\n", argv[0]);
		return 2;
	}
	const uint64_t span = strtoull(argv[2], 0, 0) << 20, seq = strtoull(argv[3], 0, 0) << 20;
	const long ops = strtol(argv[4], 0, 0);
	int fd = open(argv[1], O_RDWR | O_DIRECT);
	if (fd < 0) die("open");
	void *buf;
	if (posix_memalign(&buf, 4096, 1 << 20)) die("posix_memalign");
	memset(buf, 0x5a, 1 << 20);
	double t = now();
	for (uint64_t off = 0; off < seq; off += 1 << 20)
		if (pwrite(fd, buf, 1 << 20, off) != 1 << 20) die("pwrite");
	if (fsync(fd)) die("fsync");
	printf("RESULT seq-write-1M %llu %llu %.6f\n", (unsigned long long)seq, (unsigned long long)(seq >> 20), now() - t);
	t = now();
	for (uint64_t off = 0; off < seq; off += 1 << 20)
		if (pread(fd, buf, 1 << 20, off) != 1 << 20) die("pread");
	printf("RESULT seq-read-1M %llu %llu %.6f\n", (unsigned long long)seq, (unsigned long long)(seq >> 20), now() - t);
	t = now();
	for (long i = 0; i < ops; i++)
		if (pwrite(fd, buf, 4096, (next() % (span / 4096)) * 4096) != 4096) die("pwrite 4k");
	if (fsync(fd)) die("fsync");
	printf("RESULT rand-write-4K %llu %ld %.6f\n", (unsigned long long)ops * 4096, ops, now() - t);
	t = now();
	for (long i = 0; i < ops; i++)
		if (pread(fd, buf, 4096, (next() % (span / 4096)) * 4096) != 4096) die("pread 4k");
	printf("RESULT rand-read-4K %llu %ld %.6f\n", (unsigned long long)ops * 4096, ops, now() - t);
	fflush(stdout);
	return 0;
}
