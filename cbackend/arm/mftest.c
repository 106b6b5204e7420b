/* mftest: bit-exactness of every kernel of this build against expected outputs that the Python side
 * wrote with the numpy reference (tests/test_arm.py). One process runs every case, because an
 * emulated process cannot start aarch64 children and one qemu start per case would dominate.
 *
 *   mftest MANIFEST
 *
 * MANIFEST lines: NAME MODEL.mfe INPUT.npy EXPECTED.npy THREADS  (expected: int32, the output as the
 * engine returns it). Prints "FAIL NAME: ..." for each mismatch and closes with "N passed, N failed";
 * exit status 0 only when every case passed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mfe.h"
#include "npy.h"

static int run_case(const char *name, const char *model, const char *input, const char *expected, int threads) {
    char err[256];
    mfe_model *m = NULL;
    npy_array x, want;
    int ok = 0;
    if (mfe_load_file(model, &m, err, sizeof err)) { printf("FAIL %s: load: %s\n", name, err); return 0; }
    if (npy_read(input, &x, err, sizeof err)) { printf("FAIL %s: %s\n", name, err); mfe_free(m); return 0; }
    if (npy_read(expected, &want, err, sizeof err)) {
        printf("FAIL %s: %s\n", name, err);
        npy_free(&x), mfe_free(m);
        return 0;
    }
    int32_t ohwc[3], dt;
    mfe_output_shape(m, ohwc, &dt);
    const int64_t n = x.ndim ? x.shape[0] : 0, per = (int64_t)ohwc[0] * ohwc[1] * ohwc[2];
    const size_t esize = dt == 2 ? 4 : 1;
    uint8_t *out = malloc((size_t)(n * per) * esize + 1);
    if (strcmp(x.descr, "|u1") || strcmp(want.descr, "<i4")) printf("FAIL %s: want uint8 input, int32 expected\n", name);
    else if (want.count != n * per) printf("FAIL %s: expected %lld values, the model gives %lld\n", name, (long long)want.count, (long long)(n * per));
    else if (!out) printf("FAIL %s: out of memory\n", name);
    else if (mfe_run(m, x.data, (int32_t)n, out, threads, err, sizeof err)) printf("FAIL %s: run: %s\n", name, err);
    else {
        ok = 1;
        for (int64_t i = 0; i < n * per && ok; i++) {
            int32_t got = esize == 4 ? ((const int32_t *)out)[i] : ((const int8_t *)out)[i];
            int32_t exp = ((const int32_t *)want.data)[i];
            if (got != exp) {
                printf("FAIL %s: element %lld (image %lld, index %lld): got %d, want %d\n", name, (long long)i,
                       (long long)(i / per), (long long)(i % per), got, exp);
                ok = 0;
            }
        }
    }
    free(out);
    npy_free(&x), npy_free(&want);
    mfe_free(m);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs("usage: mftest MANIFEST   (lines: NAME MODEL.mfe INPUT.npy EXPECTED.npy THREADS)\n", argc == 2 ? stdout : stderr);
        return argc == 2 ? 0 : 1;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) { fprintf(stderr, "error: cannot read %s\n", argv[1]); return 1; }
    char line[4096], name[1024], model[1024], input[1024], expected[1024];
    int threads, passed = 0, failed = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        if (sscanf(line, "%1023s %1023s %1023s %1023s %d", name, model, input, expected, &threads) != 5) {
            printf("FAIL manifest line: %s", line);
            failed++;
            continue;
        }
        if (run_case(name, model, input, expected, threads)) passed++;
        else failed++;
    }
    fclose(f);
    printf("isa %s\n%d passed, %d failed\n", mfe_isa(), passed, failed);
    return failed ? 1 : 0;
}
