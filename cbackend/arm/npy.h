/* A small .npy reader for the standalone programs (no Python on the board): versions 1-3, C order,
 * dtypes |u1, |i1, <i4, <f4, <f8 (little-endian, as on x86-64 and aarch64 Linux). Header-only. */
#ifndef MFE_NPY_H
#define MFE_NPY_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPY_MAX_DIM 8

typedef struct {
    char descr[8];               /* "|u1", "<i4", ... */
    int ndim;
    int64_t shape[NPY_MAX_DIM];
    int64_t count;               /* elements */
    size_t itemsize;
    void *data;                  /* count * itemsize bytes, malloc'd */
} npy_array;

static void npy_free(npy_array *a) {
    free(a->data);
    a->data = NULL;
}

/* The value text after 'key': in the header dict, or NULL. */
static const char *npy_field(const char *hdr, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (!p) return NULL;
    p = strchr(p + strlen(pat), ':');
    if (!p) return NULL;
    for (p++; *p == ' '; p++) {}
    return p;
}

/* Read path into a; returns 0, or 1 with a one-line message in err. */
static int npy_read(const char *path, npy_array *a, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "cannot read %s: No such file or unreadable", path); return 1; }
    unsigned char pre[12];
    char *hdr = NULL;
    int rc = 1;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        snprintf(err, errlen, "cannot read %s: not a .npy file", path);
        goto done;
    }
    size_t hlen = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) {  /* versions 2 and 3: a 4-byte header length */
        if (fread(pre + 10, 1, 2, f) != 2) { snprintf(err, errlen, "cannot read %s: truncated header", path); goto done; }
        hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    }
    if (hlen > (1 << 20) || !(hdr = calloc(1, hlen + 1)) || fread(hdr, 1, hlen, f) != hlen) {
        snprintf(err, errlen, "cannot read %s: bad .npy header", path);
        goto done;
    }
    const char *d = npy_field(hdr, "descr"), *fo = npy_field(hdr, "fortran_order"), *sh = npy_field(hdr, "shape");
    if (!d || !fo || !sh || *d != '\'' || *sh != '(') { snprintf(err, errlen, "cannot read %s: bad .npy header", path); goto done; }
    size_t dl = strcspn(d + 1, "'");
    if (dl >= sizeof a->descr) dl = sizeof a->descr - 1;
    memcpy(a->descr, d + 1, dl);
    if (!strcmp(a->descr, "|u1") || !strcmp(a->descr, "|i1")) a->itemsize = 1;
    else if (!strcmp(a->descr, "<i4") || !strcmp(a->descr, "<f4")) a->itemsize = 4;
    else if (!strcmp(a->descr, "<f8")) a->itemsize = 8;
    else { snprintf(err, errlen, "%s: dtype %s not supported: give uint8 pixels (or floats in [0, 1])", path, a->descr); goto done; }
    if (strncmp(fo, "False", 5) != 0) { snprintf(err, errlen, "%s: Fortran-order arrays are not supported", path); goto done; }
    a->count = 1;
    for (const char *p = sh + 1; *p && *p != ')';) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || a->ndim == NPY_MAX_DIM) { snprintf(err, errlen, "%s: bad shape in the .npy header", path); goto done; }
        a->shape[a->ndim++] = v;
        if (v && a->count > INT64_MAX / v) { snprintf(err, errlen, "%s: array too large", path); goto done; }
        a->count *= v;
        p = end;
    }
    size_t bytes = (size_t)a->count * a->itemsize;
    if (!(a->data = malloc(bytes ? bytes : 1))) { snprintf(err, errlen, "%s: out of memory", path); goto done; }
    if (fread(a->data, 1, bytes, f) != bytes) { snprintf(err, errlen, "cannot read %s: truncated data", path); goto done; }
    rc = 0;
done:
    if (rc) npy_free(a);
    free(hdr);
    fclose(f);
    return rc;
}

#endif
