/* insncount: a qemu TCG plugin (plugin API version 1, qemu 7.2 user mode) that counts executed guest
 * instructions, for an ARM figure where no ARM clock is reachable.
 *
 *   gcc -shared -fPIC -O2 -o insncount.so insncount.c
 *   qemu-aarch64 -cpu cortex-a57 -L SYSROOT -plugin ./insncount.so,outfile=COUNT PROG ARGS
 *
 * Each translated block gets one inline "add n_insns" on execution (no callback per instruction),
 * so counting costs little. The total is written to outfile (default: stderr) at exit as
 * "insns N". Counts are exact for single-threaded guests; with several guest threads the one
 * counter is shared without atomics, so run counts with --threads 1.
 * With tbs=PATH it also writes one line "ADDRESS INSNS" per translated block (its guest start address
 * and the instructions it executed in all), for a per-function profile against the symbol table.
 *
 * Debian ships qemu 7.2 without qemu-plugin.h, so the few API v1 prototypes are declared here. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;  /* only passed through */
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

static uint64_t insns;
static char outfile[4096], tbsfile[4096];

typedef struct block { uint64_t vaddr, insns; struct block *next; } block;
static block *blocks;  /* per translated block, with tbs= only (translation is serialised in qemu) */

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    uint64_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns, n);
    block *b = tbsfile[0] ? calloc(1, sizeof *b) : NULL;
    if (b) {
        b->vaddr = qemu_plugin_tb_vaddr(tb), b->next = blocks, blocks = b;
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &b->insns, n);
    }
}

static void at_exit(qemu_plugin_id_t id, void *userdata) {
    (void)id, (void)userdata;
    FILE *f = outfile[0] ? fopen(outfile, "w") : stderr;
    if (!f) f = stderr;
    fprintf(f, "insns %llu\n", (unsigned long long)insns);
    if (f != stderr) fclose(f);
    FILE *t = tbsfile[0] ? fopen(tbsfile, "w") : NULL;
    for (block *b = blocks; t && b; b = b->next)
        if (b->insns) fprintf(t, "%llx %llu\n", (unsigned long long)b->vaddr, (unsigned long long)b->insns);
    if (t) fclose(t);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "outfile=", 8) && strlen(argv[i] + 8) < sizeof outfile) strcpy(outfile, argv[i] + 8);
        else if (!strncmp(argv[i], "tbs=", 4) && strlen(argv[i] + 4) < sizeof tbsfile) strcpy(tbsfile, argv[i] + 4);
        else {
            fprintf(stderr, "insncount: unknown argument %s (want outfile=PATH, tbs=PATH)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
