/* Public C API of the CUDA backend (build/cuda/libmfe_cuda.so, `make cuda`): the same model files and
 * the same bytes as the C backend (cbackend/include/mfe.h), with the graph on a GPU.
 *
 * Loading goes through the C loader (every check of docs/format.md), then uploads the weights once and
 * plans device-resident activation buffers from the C memory plan; each run copies the uint8 images in,
 * runs every node on the model's stream and copies the output back. Every call returns MFE_OK or an error
 * code of mfe.h with a one-line message in err[errlen]: MFE_EIO for a CUDA failure (no device, out of
 * device memory, a failed launch), MFE_EFORMAT for an invalid file, MFE_EARG for a bad argument. No call
 * exits or aborts the process. One model must not run from two threads at once (engine/cuda.py holds a
 * lock); distinct models may. */
#ifndef MFE_CUDA_H
#define MFE_CUDA_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mfe_cuda_model mfe_cuda_model;

/* Number of CUDA devices; MFE_EIO with the runtime's reason where there is none usable (no driver, no
 * GPU), *count = 0 then. */
int mfe_cuda_device_count(int32_t *count, char *err, size_t errlen);
/* "NVIDIA H100 80GB HBM3, sm_90, 132 SMs" for device `device` into name[len]. */
int mfe_cuda_device_name(int32_t device, char *name, size_t len, char *err, size_t errlen);
/* The CUDA runtime this library was built with, the architectures it holds code for, "dp4a" or "plain". */
const char *mfe_cuda_build_info(void);

int mfe_cuda_load(const void *data, size_t size, int32_t device, mfe_cuda_model **out, char *err, size_t errlen);
void mfe_cuda_free(mfe_cuda_model *m);
void mfe_cuda_input_shape(const mfe_cuda_model *m, int32_t hwc[3]);
void mfe_cuda_output_shape(const mfe_cuda_model *m, int32_t hwc[3], int32_t *dtype);
/* The device's description (as mfe_cuda_device_name) of the device the model lives on. */
const char *mfe_cuda_model_device(const mfe_cuda_model *m);

/* n >= 0 images: uint8 [n,H,W,C] in host memory -> output [n,H',W',C'] of the output dtype in host memory. */
int mfe_cuda_run(mfe_cuda_model *m, const uint8_t *input, int32_t n, void *output, char *err, size_t errlen);

/* Benchmark helpers (benchmarks/cuda.py): times[reps] in ms, each from CUDA events on the model's stream.
 * mfe_cuda_time_graph puts the n images on the device once, then times `reps` passes of every node
 * (device-resident in and out: no copies, no input quantisation; n must fit one pass, see
 * mfe_cuda_max_batch). mfe_cuda_time_copy times device-to-device cudaMemcpyAsync of `bytes`. */
int32_t mfe_cuda_max_batch(const mfe_cuda_model *m);
int mfe_cuda_time_graph(mfe_cuda_model *m, const uint8_t *input, int32_t n, int32_t warmup, int32_t reps, float *times,
                        char *err, size_t errlen);
int mfe_cuda_time_copy(int32_t device, size_t bytes, int32_t warmup, int32_t reps, float *times, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
