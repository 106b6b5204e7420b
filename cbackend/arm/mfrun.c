/* mfrun: the standalone runner (no Python), for boards such as the Jetson Nano.
 *
 *   mfrun MODEL INPUT.npy [--json] [--threads N] [--batch N] [--repeat N]
 *
 * Same C sources as the cffi backend (one loader, one set of kernels); prints predictions and the
 * SHA-256 of the little-endian int32 logits under the JSON keys of `python cli.py run --json`, so the
 * two can be compared across machines. Errors: one line "error: ..." on stderr, exit status 1. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mfe.h"
#include "npy.h"
#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#endif

void mfe_sha256(const uint8_t *data, size_t len, uint8_t out[32]);  /* src/sha256.c */

static const char USAGE[] =
    "usage: mfrun MODEL INPUT.npy [--json] [--threads N] [--batch N] [--repeat N]\n"
    "\n"
    "Run an .mfe model on a uint8 NHWC .npy batch (N,H,W,C; (N,H,W) for one channel; floats in [0, 1]\n"
    "are rounded to pixels) and print predictions and the SHA-256 of the little-endian int32 logits.\n"
    "\n"
    "  --json       one JSON object: model, backend, threads, batch, n, input, predictions,\n"
    "               logits_sha256, latency_ms, isa (the keys of `python cli.py run --json`)\n"
    "  --threads N  OpenMP threads (default 1; 4 on a Jetson Nano)\n"
    "  --batch N    images per call (default 64)\n"
    "  --repeat N   run the whole input N times (benchmarks, instruction counts; default 1)\n"
    "\n"
    "Example:\n"
    "  ./mfrun default.mfe sample.npy --json --threads 4\n";

static void fail(const char *fmt, const char *a, const char *b) {
    fputs("error: ", stderr);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    exit(1);
}

static long parse_int(const char *flag, const char *v, long lo, long hi) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < lo || x > hi) fail("%s needs an integer in range, got '%s'", flag, v ? v : "");
    return x;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* Images as uint8 (N, H, W, C): shapes and float rounding as the Python engine's prepare_input. */
static uint8_t *prepare_input(npy_array *a, const int32_t hwc[3], int64_t *n, const char *path) {
    const int64_t h = hwc[0], w = hwc[1], c = hwc[2];
    int ok = 0;
    if (a->ndim == 4 && a->shape[1] == h && a->shape[2] == w && a->shape[3] == c) ok = 1, *n = a->shape[0];
    else if (a->ndim == 3 && a->shape[0] == h && a->shape[1] == w && a->shape[2] == c) ok = 1, *n = 1;
    else if (a->ndim == 3 && c == 1 && a->shape[1] == h && a->shape[2] == w) ok = 1, *n = a->shape[0];
    if (!ok) {
        char got[160] = "(", want[96];
        for (int i = 0; i < a->ndim; i++) {
            size_t l = strlen(got);
            snprintf(got + l, sizeof got - l, "%lld%s", (long long)a->shape[i], a->ndim == 1 ? ",)" : i + 1 < a->ndim ? ", " : ")");
        }
        if (!a->ndim) strcat(got, ")");
        snprintf(want, sizeof want, "(N, %d, %d, %d)", hwc[0], hwc[1], hwc[2]);
        fail("input shape %s does not match the model's NHWC input %s", got, want);
    }
    if (*n == 0) fail("empty batch: no images to run%s%s", "", "");
    if (!strcmp(a->descr, "|u1")) return a->data;
    if (!strcmp(a->descr, "|i1") || !strcmp(a->descr, "<i4"))
        fail("%s: input dtype %s not supported: give uint8 pixels or floats in [0, 1]", path, a->descr);
    uint8_t *u = malloc((size_t)a->count);
    if (!u) fail("out of memory%s%s", "", "");
    for (int64_t i = 0; i < a->count; i++) {  /* rint(x * 255) in the array's own precision, clipped */
        double v;
        if (!strcmp(a->descr, "<f4")) {
            float x = ((const float *)a->data)[i];
            if (!isfinite(x)) fail("input holds NaN or infinite values%s%s", "", "");
            v = nearbyintf(x * 255.0f);
        } else {
            double x = ((const double *)a->data)[i];
            if (!isfinite(x)) fail("input holds NaN or infinite values%s%s", "", "");
            v = nearbyint(x * 255.0);
        }
        u[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    return u;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *input_path = NULL;
    int as_json = 0;
    long threads = 1, batch = 64, repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) { fputs(USAGE, stdout); return 0; }
        else if (!strcmp(s, "--json")) as_json = 1;
        else if (!strcmp(s, "--threads")) threads = parse_int(s, i + 1 < argc ? argv[++i] : NULL, 1, 256);
        else if (!strcmp(s, "--batch")) batch = parse_int(s, i + 1 < argc ? argv[++i] : NULL, 1, 1L << 20);
        else if (!strcmp(s, "--repeat")) repeat = parse_int(s, i + 1 < argc ? argv[++i] : NULL, 1, 1L << 20);
        else if (s[0] == '-' && s[1]) fail("unknown option %s (see mfrun --help)%s", s, "");
        else if (!model_path) model_path = s;
        else if (!input_path) input_path = s;
        else fail("unexpected argument %s (see mfrun --help)%s", s, "");
    }
    if (!model_path || !input_path) fail("give MODEL and INPUT.npy (see mfrun --help)%s%s", "", "");
#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
    if (!(getauxval(AT_HWCAP) & HWCAP_ASIMDDP))
        fail("this mfrun was built for ARMv8.2 dot products (sdot), which this CPU lacks: "
             "cross-compile with --cpu cortex-a57 (runs on any ARMv8-A core)%s%s", "", "");
#endif

    char err[256];
    mfe_model *m = NULL;
    if (mfe_load_file(model_path, &m, err, sizeof err) != MFE_OK) fail("%s%s", err, "");
    npy_array a;
    if (npy_read(input_path, &a, err, sizeof err)) fail("%s%s", err, "");
    int32_t in_hwc[3], out_hwc[3], out_dt;
    mfe_input_shape(m, in_hwc);
    mfe_output_shape(m, out_hwc, &out_dt);
    int64_t n = 0;
    uint8_t *images = prepare_input(&a, in_hwc, &n, input_path);
    const size_t in_bytes = (size_t)in_hwc[0] * in_hwc[1] * in_hwc[2];
    const size_t per = (size_t)out_hwc[0] * out_hwc[1] * out_hwc[2], esize = out_dt == 2 ? 4 : 1;
    uint8_t *out = malloc(per * esize * (size_t)n + 1);
    const size_t n_batches = (size_t)((n + batch - 1) / batch);
    double *times = malloc(sizeof(double) * n_batches * (size_t)repeat);
    if (!out || !times) fail("out of memory%s%s", "", "");
    size_t nt = 0;
    for (long r = 0; r < repeat; r++)
        for (int64_t s = 0; s < n; s += batch) {
            int32_t nb = (int32_t)(n - s < batch ? n - s : batch);
            double t0 = now_ms();
            if (mfe_run(m, images + (size_t)s * in_bytes, nb, out + (size_t)s * per * esize, (int32_t)threads, err, sizeof err))
                fail("%s%s", err, "");
            times[nt++] = now_ms() - t0;
        }

    /* logits as little-endian int32, as the Python CLI hashes them; predictions: first argmax */
    uint8_t *le = malloc(per * 4 * (size_t)n + 1);
    int64_t *pred = malloc(sizeof(int64_t) * (size_t)n);
    if (!le || !pred) fail("out of memory%s%s", "", "");
    for (int64_t b = 0; b < n; b++) {
        int32_t best = INT32_MIN;
        pred[b] = 0;
        for (size_t j = 0; j < per; j++) {
            size_t i = (size_t)b * per + j;
            int32_t v = esize == 4 ? ((const int32_t *)out)[i] : ((const int8_t *)out)[i];
            for (int k = 0; k < 4; k++) le[4 * i + k] = (uint8_t)((uint32_t)v >> (8 * k));
            if (v > best) best = v, pred[b] = (int64_t)j;
        }
    }
    uint8_t digest[32];
    char hex[65];
    mfe_sha256(le, per * 4 * (size_t)n, digest);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    double med = median(times, nt), per_image = med / (double)(n < batch ? n : batch);

    if (as_json) {
        printf("{\"model\": ");
        json_string(model_path);
        printf(", \"backend\": \"c\", \"threads\": %ld, \"batch\": %ld, \"n\": %lld, \"input\": ", threads, batch, (long long)n);
        json_string(input_path);
        printf(", \"predictions\": [");
        for (int64_t b = 0; b < n; b++) printf(b ? ", %lld" : "%lld", (long long)pred[b]);
        printf("], \"logits_sha256\": \"%s\", \"latency_ms\": {\"per_batch_median\": %.4f, \"per_image\": %.5f}, "
               "\"isa\": \"%s\", \"runner\": \"mfrun\"}\n", hex, med, per_image, mfe_isa());
    } else {
        printf("model     %s\n", model_path);
        printf("backend   c (%s), %ld thread(s), batch %ld\n", mfe_isa(), threads, batch);
        printf("images    %lld from %s\n", (long long)n, input_path);
        printf("latency   %.3f ms per batch (median), %.4f ms per image\n", med, per_image);
        printf("logits    sha256 %s\n", hex);
        printf("predicted");
        for (int64_t b = 0; b < n && b < 20; b++) printf(" %lld", (long long)pred[b]);
        printf("%s\n", n > 20 ? " ..." : "");
    }
    if (images != a.data) free(images);
    npy_free(&a);
    free(out), free(le), free(pred), free(times);
    mfe_free(m);
    return 0;
}
