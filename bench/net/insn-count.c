/*
 * A qemu TCG plugin (plugin API version 1, qemu 4.2 to 8.x) that counts the guest instructions executed, into a
 * 64-bit counter in a file the host maps too, so bench/net can read the count at any moment without stopping qemu.
 *
 *   qemu-system-riscv64 ... -plugin ./insn-count.so,counter=/tmp/counter   (the file: 8 bytes, created by the host)
 *
 * Each instruction adds 1 inline (exact, and slower than counting whole blocks, which overcounts a block left
 * early by a trap). With several vCPUs the adds race; bench/net runs one.
 * The declarations below are the few entry points of qemu's plugin ABI this uses, written out so the build
 * needs no qemu headers.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op, void *ptr,
                                                uint64_t imm);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t *counter;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  for (size_t i = 0; i < n; i++)
    qemu_plugin_register_vcpu_insn_exec_inline(qemu_plugin_tb_get_insn(tb, i), QEMU_PLUGIN_INLINE_ADD_U64, counter, 1);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const void *info, int argc,
                                                               char **argv) {
  (void)info;
  const char *path = NULL;
  for (int i = 0; i < argc; i++)
    if (strncmp(argv[i], "counter=", 8) == 0) path = argv[i] + 8;
  if (!path) return -1;
  int fd = open(path, O_RDWR);
  if (fd < 0) return -1;
  void *p = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return -1;
  counter = p;
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  return 0;
}
