/* Public C API of the multiplication-free engine: load a model file, run uint8 NHWC batches. */
#ifndef MFE_H
#define MFE_H
#include <stddef.h>
#include <stdint.h>

typedef struct mfe_model mfe_model;

/* Error codes; every call that can fail also writes a one-line, NUL-terminated message into err[errlen]
 * (err may be NULL when errlen is 0). MFE_EFORMAT: the file is invalid (the message names the check and,
 * where it has one, the byte offset); MFE_EIO: it cannot be read; MFE_ENOMEM: out of memory;
 * MFE_EARG: a bad argument (null pointer, negative batch, threads outside 1..256). */
enum { MFE_OK = 0, MFE_EIO = 1, MFE_EFORMAT = 2, MFE_ENOMEM = 3, MFE_EARG = 4 };

/* Validate and load a model from memory (copied) or a file. Returns MFE_OK and *out on success, else an
 * error code and *out = NULL. Every byte is checked before use (docs/format.md): a truncated, corrupted
 * or hostile file is refused, never read out of bounds, and memory stays bounded (activations <= 1 GiB
 * per image, kernel scratch <= 256 MiB per thread). */
int mfe_load(const void *data, size_t size, mfe_model **out, char *err, size_t errlen);
int mfe_load_file(const char *path, mfe_model **out, char *err, size_t errlen);
void mfe_free(mfe_model *m);

/* Shapes per image (H, W, C) and the output dtype code (MFE_DT_INT8 or MFE_DT_INT32). */
void mfe_input_shape(const mfe_model *m, int32_t hwc[3]);
void mfe_output_shape(const mfe_model *m, int32_t hwc[3], int32_t *dtype);
int32_t mfe_input_zero_point(const mfe_model *m);

/* Run n >= 0 images: input uint8 [n,H,W,C], output [n,H',W',C'] of the output dtype; threads 1..256
 * (OpenMP; the bytes do not depend on it). Buffers are planned on the first call and grow only when
 * threads exceed the plan; not safe to call concurrently on one model: use one model per thread, or a
 * lock (engine/native.py holds one per model). Distinct models may run concurrently. */
int mfe_run(mfe_model *m, const uint8_t *input, int32_t n, void *output, int32_t threads,
            char *err, size_t errlen);

/* mfe_run that also adds each node's wall-clock seconds into node_seconds[k] for k < mfe_node_count(m), in
 * file order: a profile of the whole graph (`python cli.py bench --only hotspots`); the output is the same. */
int mfe_run_profiled(mfe_model *m, const uint8_t *input, int32_t n, void *output, int32_t threads,
                     double *node_seconds, char *err, size_t errlen);
int32_t mfe_node_count(const mfe_model *m);

/* The instruction set the kernels were built for: "avx512", "avx2", "neon-dotprod", "neon" or "scalar". */
const char *mfe_isa(void);

#endif
