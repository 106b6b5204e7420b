/* libFuzzer target: the C loader and a graph run on whatever bytes the fuzzer makes (issue 7).
 *
 * Each input is a model file. The target first reseals it (writes its real size into the size field
 * and its SHA-256 into the checksum), otherwise nearly every mutation would stop at the checksum and
 * the parser behind it would never be reached. A file the loader accepts is run on a few deterministic
 * images when its work is small (so that one input cannot take seconds), twice: as one batch and image
 * by image, which must agree byte for byte. A file the loader refuses must say why in a non-empty,
 * terminated message. Any crash, sanitizer report, leak or disagreement is a finding.
 *
 *   make fuzz            # build and fuzz for FUZZ_SECONDS (CI: 60 s)
 *   make fuzz-build && build/fuzz/fuzz_model -dict=cbackend/fuzz/mfe.dict build/fuzz/corpus cbackend/fuzz/corpus
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "../tests/work.h"

#define MAX_INPUT (1 << 20)        /* bytes of one model file */
#define MAX_WORK ((int64_t)1 << 20) /* estimated inner-loop steps per image, times the batch */
#define MAX_ARENA ((size_t)32 << 20)
#define MAX_BATCH 3

static uint64_t mix(uint64_t h) {  /* splitmix64 */
    h += 0x9e3779b97f4a7c15ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

static void fail(const char *what, const char *detail) {
    fprintf(stderr, "fuzz_model: %s: %s\n", what, detail);
    abort();
}

static void run_model(mfe_model *m, uint64_t seed) {
    const int64_t work = mfe_model_work(m);
    const int32_t n = 1 + (int32_t)(seed % MAX_BATCH);
    if (work * n > MAX_WORK || m->plan_bytes * (size_t)m->cap_batch > MAX_ARENA || m->scratch_per_thread > MAX_ARENA)
        return;
    int32_t ihwc[3], ohwc[3], odt;
    mfe_input_shape(m, ihwc);
    mfe_output_shape(m, ohwc, &odt);
    const size_t in_bytes = (size_t)ihwc[0] * ihwc[1] * ihwc[2];
    const size_t out_bytes = (size_t)ohwc[0] * ohwc[1] * ohwc[2] * (odt == MFE_DT_INT32 ? 4 : 1);
    uint8_t *x = malloc(in_bytes * n), *y = malloc(out_bytes * n), *y1 = malloc(out_bytes);
    if (!x || !y || !y1) fail("harness", "out of memory");
    uint64_t h = seed;
    const int edge = (int)((seed >> 8) % 4);  /* random, all 255, all 0, alternating */
    for (size_t i = 0; i < in_bytes * n; i++) {
        h = mix(h);
        x[i] = edge == 0 ? (uint8_t)h : edge == 1 ? 255 : edge == 2 ? 0 : (i & 1 ? 255 : 0);
    }
    char err[256];
    if (mfe_run(m, x, n, y, 1, err, sizeof err) != MFE_OK) fail("run failed", err);
    for (int32_t b = 0; b < n; b++) {  /* the same image alone gives the same bytes */
        if (mfe_run(m, x + in_bytes * b, 1, y1, 1, err, sizeof err) != MFE_OK) fail("run failed", err);
        if (memcmp(y1, y + out_bytes * b, out_bytes) != 0) fail("batch disagreement", "image alone != in a batch");
    }
    if (mfe_run(m, x, 0, NULL, 1, err, sizeof err) != MFE_OK) fail("empty batch", err);
    free(x);
    free(y);
    free(y1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_INPUT) return 0;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    if (size >= MFE_PREAMBLE_SIZE) {  /* reseal: the true size and checksum, so the parser is reached */
        uint64_t s = size;
        memcpy(buf + 16, &s, 8);
        mfe_sha256(buf + MFE_PREAMBLE_SIZE, size - MFE_PREAMBLE_SIZE, buf + 24);
    }
    mfe_model *m = NULL;
    char err[256];
    memset(err, 0x7f, sizeof err);
    int rc = mfe_load(buf, size, &m, err, sizeof err);
    if (rc == MFE_OK) {
        if (!m) fail("load", "MFE_OK without a model");
        uint64_t seed = size;
        for (size_t i = 0; i < size; i += 61) seed = mix(seed ^ buf[i]);
        run_model(m, seed);
        mfe_free(m);
    } else {
        if (m) fail("load", "an error with a model");
        if (rc != MFE_EFORMAT && rc != MFE_ENOMEM) fail("load", "unexpected error code");
        if (!memchr(err, 0, sizeof err) || !err[0]) fail("load", "error message empty or unterminated");
    }
    free(buf);
    return 0;
}
