/* C test program for the backend under AddressSanitizer and UndefinedBehaviorSanitizer (issue 7).
 *
 *   run_models CASE.mfe... [DAMAGED.bad...]
 *
 * For each CASE.mfe (written by cbackend/tests/make_cases.py with CASE.in and CASE.out beside it):
 * load it from memory and from the file, run its images with 1 and 3 threads, image by image, and from
 * four threads at once (each with its own copy of the model), and compare every output byte with the
 * numpy reference's. Then cut the file at many lengths and flip bytes (resealing the checksum) and load
 * and run what is accepted, so the sanitizers watch the loader's refusals and the kernels on odd graphs.
 * Each DAMAGED.bad must be refused with MFE_EFORMAT and a message. Exit status 0 only if all passed.
 * Build: `make sanitize` (scalar and native builds, -fsanitize=address,undefined -fno-sanitize-recover=all).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "work.h"

#define DAMAGE_MAX_BYTES (256 << 10)  /* larger models (the trained zoo one) skip the cut/edit sweep */

static int failures;

#define EXPECT(cond, ...)                                                  \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    fclose(f);
    *size = n;
    return buf;
}

static char *with_suffix(const char *path, const char *old, const char *suffix) {
    size_t n = strlen(path), k = strlen(old);
    char *s = malloc(n + strlen(suffix) + 1);
    memcpy(s, path, n - k);
    strcpy(s + n - k, suffix);
    return s;
}

typedef struct {
    const uint8_t *model;
    size_t model_size;
    const uint8_t *x, *want;
    int32_t n;
    size_t out_bytes;
    int ok;
} job;

/* One thread: its own copy of the model, the whole batch three times with 1, 2 and 1 threads. */
static void *thread_main(void *arg) {
    job *j = arg;
    mfe_model *m;
    char err[256];
    j->ok = 0;
    if (mfe_load(j->model, j->model_size, &m, err, sizeof err) != MFE_OK) return NULL;
    uint8_t *y = malloc(j->out_bytes * (size_t)j->n);
    int ok = 1;
    for (int rep = 0; rep < 3; rep++) {
        memset(y, 0xa5, j->out_bytes * (size_t)j->n);
        ok &= mfe_run(m, j->x, j->n, y, 1 + rep % 2, err, sizeof err) == MFE_OK &&
              memcmp(y, j->want, j->out_bytes * (size_t)j->n) == 0;
    }
    free(y);
    mfe_free(m);
    j->ok = ok;
    return NULL;
}

static size_t out_bytes_of(const mfe_model *m) {
    int32_t hwc[3], dt;
    mfe_output_shape(m, hwc, &dt);
    return (size_t)hwc[0] * hwc[1] * hwc[2] * (dt == MFE_DT_INT32 ? 4 : 1);
}

static size_t in_bytes_of(const mfe_model *m) {
    int32_t hwc[3];
    mfe_input_shape(m, hwc);
    return (size_t)hwc[0] * hwc[1] * hwc[2];
}

/* Load what the mutation left; if accepted, run a few images (1 and 2 threads): no sanitizer report. */
static int load_and_run(const uint8_t *data, size_t size, const uint8_t *x, size_t x_len) {
    mfe_model *m;
    char err[256];
    err[0] = 0;
    int rc = mfe_load(data, size, &m, err, sizeof err);
    if (rc != MFE_OK) {
        EXPECT(err[0] && memchr(err, 0, sizeof err), "refusal without a message");
        return 0;
    }
    size_t ib = in_bytes_of(m), ob = out_bytes_of(m);
    if (mfe_model_work(m) <= ((int64_t)2 << 20) && m->plan_bytes <= ((size_t)4 << 20)) {
        const int32_t n = 2;
        uint8_t *xi = malloc(ib * 2), *y = malloc(ob * 2);
        for (size_t i = 0; i < ib * 2; i++) xi[i] = x[i % x_len];
        EXPECT(mfe_run(m, xi, n, y, 2, err, sizeof err) == MFE_OK, "mutated model: run failed: %s", err);
        free(xi);
        free(y);
    }
    mfe_free(m);
    return 1;
}

static void damage(const char *name, const uint8_t *good, size_t size, const uint8_t *x, size_t x_len) {
    uint8_t *buf = malloc(size);
    int accepted = 0, tried = 0;
    size_t step = size / 200 + 1;
    for (size_t len = 0; len < size; len += step, tried++) {  /* cut, then resealed: deeper checks */
        memcpy(buf, good, len);
        if (len >= MFE_PREAMBLE_SIZE) {
            uint64_t s = len;
            memcpy(buf + 16, &s, 8);
            mfe_sha256(buf + MFE_PREAMBLE_SIZE, len - MFE_PREAMBLE_SIZE, buf + 24);
        }
        int padding_only = 1;  /* the writer zero-pads the last blob to 64 bytes: cutting that is harmless */
        for (size_t i = len; i < size && padding_only; i++) padding_only = good[i] == 0;
        EXPECT(!load_and_run(buf, len, x, x_len) || padding_only, "%s cut to %zu bytes was accepted", name, len);
    }
    static const uint8_t values[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff, 0x10, 0x40};
    uint64_t blobs_at;  /* edits fall densely on the header and tables, sparsely on the weights */
    memcpy(&blobs_at, good + MFE_PREAMBLE_SIZE + 56, 8);
    size_t flips = 0, sparse = size / 64 + 1;
    for (size_t at = MFE_PREAMBLE_SIZE; at < size; at += at < blobs_at ? 1 + at % 5 : sparse + at % 7, flips++) {
        memcpy(buf, good, size);
        buf[at] = at & 8 ? (uint8_t)(good[at] ^ (1u << (at % 8))) : values[at % sizeof values];
        mfe_sha256(buf + MFE_PREAMBLE_SIZE, size - MFE_PREAMBLE_SIZE, buf + 24);
        accepted += load_and_run(buf, size, x, x_len);
    }
    printf("  %s: %d cuts refused, %zu byte edits (%d accepted and run)\n", name, tried, flips, accepted);
    free(buf);
}

static void check_case(const char *path) {
    size_t size = 0, in_size = 0, out_size = 0;
    char *in_path = with_suffix(path, ".mfe", ".in"), *out_path = with_suffix(path, ".mfe", ".out");
    uint8_t *data = read_all(path, &size), *in = read_all(in_path, &in_size), *want = read_all(out_path, &out_size);
    free(in_path);
    free(out_path);
    if (!data || !in || !want || in_size < 4) {
        EXPECT(0, "%s: cannot read the case files", path);
        goto done;
    }
    mfe_model *m, *mf;
    char err[256];
    if (mfe_load(data, size, &m, err, sizeof err) != MFE_OK) {
        EXPECT(0, "%s: load failed: %s", path, err);
        goto done;
    }
    EXPECT(mfe_load_file(path, &mf, err, sizeof err) == MFE_OK, "%s: load_file failed: %s", path, err);
    mfe_free(mf);
    int32_t n;
    memcpy(&n, in, 4);
    const uint8_t *x = in + 4;
    size_t ib = in_bytes_of(m), ob = out_bytes_of(m);
    if (in_size != 4 + ib * (size_t)n || out_size != ob * (size_t)n) {
        EXPECT(0, "%s: case files disagree with the model's shapes", path);
        mfe_free(m);
        goto done;
    }
    uint8_t *y = malloc(ob * (size_t)n + 1);
    for (int32_t threads = 1; threads <= 3; threads += 2) {
        memset(y, 0x5a, ob * (size_t)n);
        EXPECT(mfe_run(m, x, n, y, threads, err, sizeof err) == MFE_OK, "%s: run failed: %s", path, err);
        EXPECT(memcmp(y, want, ob * (size_t)n) == 0, "%s: %d thread(s) differ from the reference", path, threads);
    }
    for (int32_t b = 0; b < n; b++) {
        EXPECT(mfe_run(m, x + ib * (size_t)b, 1, y, 2, err, sizeof err) == MFE_OK, "%s: run failed: %s", path, err);
        EXPECT(memcmp(y, want + ob * (size_t)b, ob) == 0, "%s: image %d alone differs from the reference", path, b);
    }
    EXPECT(mfe_run(m, x, 0, NULL, 1, err, sizeof err) == MFE_OK, "%s: empty batch", path);
    EXPECT(mfe_run(m, x, -1, y, 1, err, sizeof err) == MFE_EARG && err[0], "%s: batch -1 accepted", path);
    EXPECT(mfe_run(m, x, n, y, 0, err, sizeof err) == MFE_EARG && err[0], "%s: 0 threads accepted", path);
    EXPECT(mfe_run(m, NULL, n, y, 1, NULL, 0) == MFE_EARG, "%s: null input accepted", path);
    free(y);
    mfe_free(m);

    job jobs[4];
    pthread_t tid[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){data, size, x, want, n, ob, 0};
        EXPECT(pthread_create(&tid[i], NULL, thread_main, &jobs[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        EXPECT(jobs[i].ok, "%s: thread %d differs from the reference", path, i);
    }
    printf("ok %s (%d images)\n", path, n);
    if (size <= DAMAGE_MAX_BYTES) damage(path, data, size, x, in_size - 4);  /* each edit rehashes the file */
done:
    free(data);
    free(in);
    free(want);
}

static void check_damaged(const char *path) {
    size_t size = 0;
    uint8_t *data = read_all(path, &size);
    mfe_model *m = (mfe_model *)1;
    char err[256] = "";
    int rc = data ? mfe_load(data, size, &m, err, sizeof err) : -1;
    EXPECT(rc == MFE_EFORMAT && m == NULL && err[0], "%s: not refused as a format error", path);
    rc = mfe_load_file(path, &m, err, sizeof err);
    EXPECT(rc == MFE_EFORMAT && m == NULL && err[0], "%s: not refused as a format error", path);
    printf("ok %s refused: %s\n", path, err);
    free(data);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CASE.mfe... [DAMAGED.bad...]\n", argv[0]);
        return 2;
    }
    mfe_model *m = (mfe_model *)1;
    char err[256];
    EXPECT(mfe_load_file("/nonexistent/model.mfe", &m, err, sizeof err) == MFE_EIO && !m, "missing file");
    EXPECT(mfe_load(NULL, 0, &m, err, sizeof err) == MFE_EFORMAT && !m, "empty buffer");
    EXPECT(mfe_load(NULL, 0, NULL, NULL, 0) == MFE_EARG, "null out");
    printf("isa %s\n", mfe_isa());
    for (int i = 1; i < argc; i++) {
        size_t k = strlen(argv[i]);
        if (k > 4 && strcmp(argv[i] + k - 4, ".bad") == 0) check_damaged(argv[i]);
        else check_case(argv[i]);
    }
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
    return failures ? 1 : 0;
}
